"""What a stream source is (a webcam index, a camera URL, a video file), how it is checked, and
how it is shown: a URL's password is masked wherever a source is logged, published or printed.

Torch-free: capture processes and `dfwatch config check` use it. Under `dfwatch run` a capture
process gets its source in the environment (`SOURCE_ENV`, readable only by the same user), never
on its command line, which every local user can read in /proc.
"""
from __future__ import annotations

import re
from pathlib import Path

from engines.errors import PERMANENT_EXIT, DfwatchError  # noqa: F401 (PERMANENT_EXIT re-exported)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
SOURCE_ENV = "DFWATCH_STREAM_SOURCE"
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@")


class SourceError(DfwatchError):
    """A source that cannot be opened; the message says which and what to check. Escaping a
    capture process it is permanent (a camera that is down is retried inside), hence the exit code."""
    exit_code = PERMANENT_EXIT


def mask_source(text: str | int) -> str:
    """`text` with the password of every `scheme://user:password@` in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))


def parse_source(source: str | int) -> str | int:
    """A webcam index (int; digit strings converted, negatives refused), a URL, or a file path."""
    if isinstance(source, int) or (isinstance(source, str) and source.lstrip("-").isdigit()):
        index = int(source)
        if index < 0:
            raise SourceError(f"webcam index {index} is invalid: use 0, 1, ... (a negative index crashes OpenCV)")
        return index
    if source.startswith(URL_SCHEMES):
        return source
    if "://" in source:
        raise SourceError(f"unsupported source URL '{mask_source(source)}': use rtsp://, rtsps://, http:// or https://")
    if not Path(source).is_file():
        raise SourceError(f"no such video file: {source}")
    return source


def source_kind(source: str | int) -> str:
    return "webcam" if isinstance(source, int) else "url" if source.startswith(URL_SCHEMES) else "file"
