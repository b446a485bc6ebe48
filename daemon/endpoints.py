"""Where the daemon's sockets live: local `ipc://` endpoints in a private runtime directory by
default, `tcp://` when configured (endpoints.frames / endpoints.verdicts)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
