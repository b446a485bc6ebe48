"""The evidence directory's layout: which folders in it are dfwatch's, and nothing else.

`<evidence dir>/<stream>/<alert_id>/` is an alert folder when it is a real directory (never a
symbolic link), under a real stream directory, named as dfwatch names alerts (32 hex digits), and
holds dfwatch's marker file (`.dfwatch-alert`, written with the alert's files). Retention, the
dashboard's alert list, reviews and calibration from reviews read the directory through
`alert_folders` and `alert_folder` only, so a folder a person put there (`photos/2025-holiday`)
or a link out of it (`victimlink -> /elsewhere`) is never deleted, listed or written.

`check_evidence_dir` is what `config check`, `dfwatch run` and a reload refuse: a system
directory, or one that holds what dfwatch did not write. Files are created owner/group only
(0640, folders 0750) whatever the umask: they hold the faces of a camera or a call.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from daemon.wire.protocol import STREAM_NAME

ALERT_ID = re.compile(r"^[0-9a-f]{32}$")
SCRATCH = re.compile(r"^\.[0-9a-f]{32}\.writing$")   # an alert's files while they are written
ALERT_MARKER = ".dfwatch-alert"                     # in every alert folder dfwatch made
STORE_MARKER = ".dfwatch-evidence"                  # at the top of an evidence directory dfwatch uses
FILE_MODE, DIR_MODE = 0o640, 0o750
# never an evidence directory, nor inside one of these (the first six) or equal to one (all)
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr")
SYSTEM_DIRS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/var", "/var/lib",
               "/var/log", "/var/tmp", "/var/cache")


class EvidenceDirError(ValueError):
    """An evidence directory dfwatch must not use; the message says why and what to do."""


def _is_real_dir(path: Path) -> bool:
    """A directory itself, not a link to one (lstat)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_real_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_alert_folder(folder: Path) -> bool:
    return ALERT_ID.match(folder.name) is not None and _is_real_dir(folder) and \
        _is_real_file(folder / ALERT_MARKER) and _is_real_dir(folder.parent) and \
        STREAM_NAME.match(folder.parent.name) is not None


def alert_folder(root: Path, stream: str, alert_id: str) -> Path | None:
    """`root/stream/alert_id` when it is an alert folder dfwatch made, else None (a link, a
    folder of someone else's, a name that is no stream's or no alert's)."""
    if not isinstance(stream, str) or not STREAM_NAME.match(stream) or stream in (".", "..") or \
            not isinstance(alert_id, str) or not ALERT_ID.match(alert_id) or not _is_real_dir(Path(root)):
        return None
    folder = Path(root) / stream / alert_id
    return folder if is_alert_folder(folder) else None


def alert_folders(root: Path) -> Iterator[Path]:
    """Every alert folder of the evidence directory (see the module docstring); nothing else."""
    root = Path(root)
    if not _is_real_dir(root):
        return
    for stream in _entries(root):
        if STREAM_NAME.match(stream.name) and stream.name not in (".", "..") and _is_real_dir(stream):
            for folder in _entries(stream):
                if ALERT_ID.match(folder.name) and is_alert_folder(folder):
                    yield folder


def _entries(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except OSError:
        return []


def folder_bytes(folder: Path) -> int:
    """The size of an alert folder's own files (lstat: a link counts as itself)."""
    total = 0
    for entry in _entries(folder):
        try:
            total += os.lstat(entry).st_size
        except OSError:
            pass
    return total


def check_evidence_dir(root: Path) -> None:
    """Raises EvidenceDirError for a directory dfwatch must not write or delete in: a system
    directory, a link, or one holding what dfwatch did not write (at the top: anything but stream
    folders of alert folders). A missing or empty directory is fine."""
    root = Path(root)
    resolved = Path(os.path.abspath(root))
    home = Path.home()
    if str(resolved) in SYSTEM_DIRS or resolved == home or \
            any(resolved == Path(t) or resolved.is_relative_to(t) for t in SYSTEM_TREES):
        raise EvidenceDirError(f"evidence.dir {root} is a system directory: give dfwatch a directory of its own "
                               "(e.g. /var/lib/dfwatch/evidence)")
    if os.path.lexists(root) and not _is_real_dir(root):
        raise EvidenceDirError(f"evidence.dir {root} is not a directory (or is a link): give dfwatch a directory "
                               "of its own")
    foreign = foreign_entries(root)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise EvidenceDirError(f"evidence.dir {root} holds what dfwatch did not write ({shown}): dfwatch deletes "
                               "old alerts there, so give it an empty directory or one it made")


def foreign_entries(root: Path) -> list[str]:
    """What, in the top two levels of an evidence directory, dfwatch did not write (relative names)."""
    found = []
    for entry in sorted(_entries(Path(root))):
        if entry.name == STORE_MARKER and _is_real_file(entry):
            continue
        if not (STREAM_NAME.match(entry.name) and entry.name not in (".", "..") and _is_real_dir(entry)):
            found.append(entry.name)
            continue
        for inner in sorted(_entries(entry)):
            ours = (ALERT_ID.match(inner.name) and _is_real_dir(inner)) or \
                (SCRATCH.match(inner.name) and _is_real_dir(inner))
            if not ours:
                found.append(f"{entry.name}/{inner.name}")
    return found


def adopt_legacy(root: Path) -> int:
    """Marks the alert folders of a dfwatch before 0.5 (no marker, but alert.json and an alert
    id's name in a real stream folder) as dfwatch's, once; returns how many it marked."""
    root = Path(root)
    if _is_real_file(root / STORE_MARKER) or not _is_real_dir(root):
        return 0
    marked = 0
    for stream in _entries(root):
        if not (STREAM_NAME.match(stream.name) and _is_real_dir(stream)):
            continue
        for folder in _entries(stream):
            if ALERT_ID.match(folder.name) and _is_real_dir(folder) and _is_real_file(folder / "alert.json") \
                    and not _is_real_file(folder / ALERT_MARKER):
                times = os.lstat(folder)
                write_private(folder / ALERT_MARKER, folder.name + "\n")
                os.utime(folder, ns=(times.st_atime_ns, times.st_mtime_ns))  # its age is its alert's
                marked += 1
    write_private(root / STORE_MARKER, "dfwatch evidence directory: alert folders are deleted by age and size\n")
    return marked


def make_private_dir(path: Path) -> None:
    """mkdir -p, each folder dfwatch creates 0750 whatever the umask."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)


def write_private(path: Path, data: str | bytes) -> None:
    """Writes a file that only its owner and group can read (0640), whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
