"""Where the daemon's sockets live: local `ipc://` endpoints in a private runtime directory by
default, `tcp://` when configured (endpoints.frames / endpoints.verdicts)."""
from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from engines.errors import DfwatchError

LOCK_FILE = "daemon.lock"
LOCK_ENV = "DFWATCH_DAEMON_LOCK"  # set by `dfwatch run` for its inference process: the parent holds the lock


class EndpointsBusy(DfwatchError):
    """Another live daemon serves these endpoints."""


@dataclass(frozen=True)
class Endpoints:
    runtime_dir: Path
    frames: str      # inference PULL binds, captures PUSH connect
    verdicts: str    # inference PUB binds, clients SUB connect
    notify: Path     # supervisor <- inference readiness/watchdog datagrams


def runtime_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    if os.environ.get("RUNTIME_DIRECTORY"):  # systemd RuntimeDirectory=
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "dfwatch"
    return Path(f"/tmp/dfwatch-{os.getuid()}")


def resolve(endpoints_config, create: bool = False) -> Endpoints:
    """The effective endpoints; `create` makes the runtime directory (mode 0700) for binding."""
    root = runtime_dir(endpoints_config.runtime_dir)
    if create:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Endpoints(root, endpoints_config.frames or f"ipc://{root}/frames",
                     endpoints_config.verdicts or f"ipc://{root}/verdicts", root / "notify")


_CLAIMS: list[int] = []  # lock descriptors held for the life of the process


def holder(endpoints: Endpoints) -> str | None:
    """The pid of the live daemon that holds these endpoints' lock (None when none does): a
    client that hears nothing yet can tell a daemon still loading its models from no daemon."""
    path = endpoints.runtime_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)  # closing releases a lock taken just now
    return None


def _lock_exclusive(fd: int, tries: int = 5) -> bool:
    """The exclusive lock, retried briefly: a client's `holder` look holds a shared lock for microseconds."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.01 * (attempt + 1))
    return False


def claim(endpoints: Endpoints) -> None:
    """Makes this process the one daemon of its runtime directory for as long as it lives (an
    exclusive lock, released by the kernel when it exits, so a dead daemon leaves nothing to
    clean up); raises EndpointsBusy when a live daemon holds it. An inference process started by `dfwatch run` inherits its parent's claim."""
    if os.environ.get(LOCK_ENV) == str(os.getppid()):
        return
    path = endpoints.runtime_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if not _lock_exclusive(fd):
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EndpointsBusy(f"another dfwatch daemon (pid {holder}) already serves {endpoints.frames} and "
                            f"{endpoints.verdicts}; stop it first, or give this one its own endpoints.runtime_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, False)
    _CLAIMS.append(fd)
