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


def quiet_opencv():
    """OpenCV, imported with its and FFmpeg's console chatter off (our log says what happened; set
    OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL yourself to debug a camera) and RTSP over TCP (UDP,
    FFmpeg's default, loses packets through NAT and firewalls)."""
    import os

    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    import cv2

    if os.environ["OPENCV_LOG_LEVEL"] == "ERROR":  # also when cv2 was imported before
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def open_video(source: str | int, open_timeout_ms: int, read_timeout_ms: int):
    """Opens a source (a cv2.VideoCapture); timeouts go to the constructor (setting them after
    opening does nothing). OpenCV is imported here, not at module import: `config check` needs
    it for files only, and most users of this module never open a source."""
    cv2 = quiet_opencv()
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
    else:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms]
        if hasattr(cv2, "CAP_PROP_N_THREADS"):
            params += [cv2.CAP_PROP_N_THREADS, 1]  # one decode thread per stream: never more busy threads than cores
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        what = {"webcam": f"webcam {source}", "url": f"stream {mask_source(source)}",
                "file": f"video file {source}"}[source_kind(source)]
        hint = {"webcam": "is the camera connected and free?",
                "url": "check the address, port and credentials, and that the camera is up",
                "file": "is it a video OpenCV/FFmpeg can decode?"}[source_kind(source)]
        raise SourceError(f"cannot open {what}: {hint}")
    return cap


def first_frame_check(path: str, opener=open_video) -> None:
    """Raises SourceError unless the video file opens and decodes at least one frame (a truncated
    MP4 can open and then yield nothing, a text file named .mp4 opens nothing): `dfwatch run`,
    `dfwatch scan` and `dfwatch config check` check files with it before starting."""
    cap = opener(path, 5000, 5000)
    try:
        if not cap.grab():
            raise SourceError(f"video file {path} decodes no frame: it is truncated, empty or not a video")
    finally:
        cap.release()
