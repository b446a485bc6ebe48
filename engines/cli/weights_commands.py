"""`dfwatch weights`: say what a checkpoint file is; list where the official weights come from."""
from __future__ import annotations

import argparse

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


def _check(args: argparse.Namespace) -> int:
    from engines.bundles.checkpoints import identify

    info = identify(args.file, trust=args.trust)
    params = f"{info['parameters'] / 1e6:.1f} M parameters" if info["parameters"] else "no parameters read"
    verdict = "loads" if info["loads"] else "does NOT load"
    print(f"{args.file}: {info['kind']}, {params}, {verdict}")
    if info["detail"]:
        print(f"  {info['detail']}")
    return 0 if info["loads"] else 1


def _sources(args: argparse.Namespace) -> int:
    from engines.bundles.weights import SOURCES

    for s in SOURCES:
        print(f"{s['file']}\n  model:  {s['model']}\n  where:  {s['where']}\n  size:   {s['size']}\n"
              f"  sha256: {s['sha256']}\n  terms:  {s['terms']}\n")
    print("dfwatch ships no weights. Put the files anywhere and pass them to 'dfwatch engines bundle'.")
    return 0
