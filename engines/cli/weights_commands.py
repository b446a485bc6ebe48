"""`dfwatch weights`: say what a checkpoint file is; where the official weights come from; fetch them."""
from __future__ import annotations

import argparse
import sys

from engines.cli import common_options


def register(sub) -> None:
    p = sub.add_parser("weights", help="inspect checkpoint files; where to download the official weights")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    c = wsub.add_parser("check", parents=[common_options(config=False)],
                        help="say what a checkpoint file is, its parameter count and whether it loads")
    c.add_argument("file")
    c.add_argument("--trust", action="store_true",
                   help="allow arbitrary pickled objects (only for files you trust; default: weights_only)")
    c.set_defaults(handler=_check)
    s = wsub.add_parser("sources", parents=[common_options(config=False)],
                        help="where to download each official weight file, and its licence")
    s.set_defaults(handler=_sources)
    f = wsub.add_parser("fetch", parents=[common_options(config=False)],
                        help="download official weight files: resumable, checksum-verified")
    f.add_argument("names", nargs="*", metavar="NAME", help="files to fetch (default: all 'weights sources' lists)")
    f.add_argument("--dir", default="weights", help="where to put them (default ./weights)")
    f.add_argument("--from", dest="mirror", metavar="URL_OR_DIR",
                   help="a mirror: a base URL (the file name is appended) or a local directory")
    f.set_defaults(handler=_fetch)


def _check(args: argparse.Namespace) -> int:
    from engines.models.checkpoints import identify

    info = identify(args.file, trust=args.trust)
    params = f"{info['parameters'] / 1e6:.1f} M parameters" if info["parameters"] else "no parameters read"
    verdict = "loads" if info["loads"] else "does NOT load"
    print(f"{args.file}: {info['kind']}, {params}, {verdict}")
    if info["detail"]:
        print(f"  {info['detail']}")
    return 0 if info["loads"] else 1


def _fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engines.bundles.fetch import FetchError, fetch, find_sources, terminal_progress

    failed = 0
    for source in find_sources(args.names):
        try:
            path, digest, pinned = fetch(source, Path(args.dir), args.mirror, terminal_progress(source["file"]))
        except FetchError as e:
            print(f"dfwatch weights fetch: {e}", file=sys.stderr)
            failed += 1
            continue
        check = "verified" if pinned else "UNPINNED (no published checksum: record this one)"
        print(f"{path}  sha256 {digest}  {check}")
    return 1 if failed else 0


def _checksum(source: dict) -> str:
    if source["sha256"]:
        return source["sha256"]
    if source["sha256_prefix"]:
        return f"{source['sha256_prefix']}... (the prefix the publisher puts in the file name)"
    return "not published ('weights fetch' prints it: record yours)"


def _sources(args: argparse.Namespace) -> int:
    from engines.models.published import SOURCES

    for s in SOURCES:
        print(f"{s['file']}\n  model:  {s['model']}\n  where:  {s['where']}\n  url:    {s.get('url') or 'none'}\n"
              f"  size:   {s['size']}\n  sha256: {_checksum(s)}\n"
              f"  terms:  {s['terms']}\n")
    print("dfwatch ships MesoNet's four weight files (Apache-2.0, in the package: 'dfwatch engines bundle --family "
          "mesonet' needs no download) and no others. 'dfwatch weights fetch' downloads those (resumable, checked); "
          "pass them to 'dfwatch engines bundle'.")
    return 0
