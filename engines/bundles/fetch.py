"""Downloading the official weight files: resumable, verified, never leaving a wrong file behind.

A download goes to `NAME.part` and continues from its size with an HTTP Range request (a server
that ignores Range sends the whole file again, which is detected and restarted). The finished
file is checked against the pinned sha256 (or the publisher's prefix) before it is renamed into
place; a mismatch deletes it. `--from` replaces the publisher's URL with a mirror (a base URL the
file name is appended to) or a local directory, for air-gapped sites; a copy from a directory
resumes too. Where the publisher puts the full sha256 in the file name (the ICPR 2020
detectors), that is the checksum a file must have.
"""
from __future__ import annotations

import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from engines.checksums import sha256_file
from engines.models.published import SOURCES
from engines.errors import DfwatchError

CHUNK = 1 << 20
TIMEOUT_S = 30


class FetchError(DfwatchError):
    """A download that failed or a file that is not the published one."""


def find_sources(names: list[str]) -> list[dict]:
    """The SOURCES entries named (by short name, e.g. icpr-b4-ffpp, or by file name, with or without
    extension); all when none named."""
    if not names:
        return list(SOURCES)
    chosen = []
    for name in names:
        match = [s for s in SOURCES if name in (s.get("name"), s["file"], s["file"].rsplit(".", 1)[0])]
        if not match:
            raise FetchError(f"no weight file named '{name}': choose from " +
                             ", ".join(s.get("name") or s["file"] for s in SOURCES))
        chosen += match
    return chosen


def verify(path: Path, source: dict) -> str:
    """The file's sha256; raises FetchError (and deletes the file) when it is not the pinned one."""
    digest = sha256_file(path)
    expected = source.get("sha256") or source.get("sha256_prefix")
    if expected and not digest.startswith(expected):
        path.unlink()
        raise FetchError(f"{source['file']}: sha256 {digest} does not match the published {expected}...; the "
                         "download was deleted. A proxy or mirror served another file: check --from and retry")
    return digest


def fetch(source: dict, directory: Path, mirror: str | None = None, progress=None) -> tuple[Path, str, bool]:
    """Downloads (or copies, from a local mirror) one file into `directory`; returns its path,
    sha256 and whether the checksum is pinned. An existing verified file is kept."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source["file"]
    pinned = bool(source.get("sha256") or source.get("sha256_prefix"))
    if target.exists():
        return target, verify(target, source), pinned
    part = target.with_name(target.name + ".part")
    if mirror and not mirror.startswith(("http://", "https://")):
        local = Path(mirror) / source["file"]
        if not local.is_file():
            raise FetchError(f"{local}: no such file in the --from directory")
        _copy(local, part)
    else:
        url = f"{mirror.rstrip('/')}/{source['file']}" if mirror else source.get("url")
        if not url:
            raise FetchError(f"{source['file']}: no direct download exists; get it from {source['where']} "
                             f"and put it in {directory}, or pass --from a mirror")
        _download(url, part, progress)
    digest = verify(part, source)
    part.rename(target)
    return target, digest, pinned


def _copy(local: Path, part: Path) -> None:
    """From a local mirror, continuing a cut copy from where its part file stops."""
    have = part.stat().st_size if part.exists() else 0
    if have > local.stat().st_size:
        part.unlink()  # not a prefix of this file: start again
        have = 0
    with open(local, "rb") as src, open(part, "ab") as out:
        src.seek(have)
        shutil.copyfileobj(src, out, CHUNK)


def _download(url: str, part: Path, progress) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is complete
            return
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}; check the network or use --from a mirror") from None
    with response:
        resumed = response.status == 206
        total = response.length + (have if resumed else 0) if response.length is not None else None
        done = have if resumed else 0
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except (OSError, urllib.error.URLError) as e:
            raise FetchError(f"{url}: the connection broke after {done} bytes ({e}); run the same command "
                             "again to resume") from None
    if total is not None and done < total:
        raise FetchError(f"{url}: the connection broke after {done} of {total} bytes; run the same command "
                         "again to resume")


def terminal_progress(name: str):
    """A progress line on a terminal (nothing otherwise), at most twice a second."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done != total:
            return
        last[0] = now
        of = f" of {total / 1e6:.0f} MB ({100 * done / total:.0f}%)" if total else ""
        print(f"\r{name}: {done / 1e6:.1f} MB{of}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    return show
