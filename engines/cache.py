"""The user's cache directory for dfwatch: $XDG_CACHE_HOME/dfwatch/NAME (~/.cache/dfwatch/NAME),
where footage, demo bundles, TensorRT engines, the Triton server and benchmark results go."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dfwatch" / name
