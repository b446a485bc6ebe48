"""What a stream source is (a webcam index, a camera URL, a video file, a region of the screen),
how it is checked, and how it is shown: a URL's password is masked wherever a source is logged,
published or printed.

`screen:` sources read the X display ($DISPLAY) with mss, so dfwatch can watch the window of a
video-call client: `screen:` (the whole first monitor), `screen:N` (monitor N), or
`screen:LEFT,TOP,WIDTHxHEIGHT` (a region in display pixels). See docs/SOURCES.md for the privacy
note: whatever the region shows is analysed, and an alert's evidence keeps it.

Torch-free: capture processes and `dfwatch config check` use it. Under `dfwatch run` a capture
process gets its source in the environment (`SOURCE_ENV`, readable only by the same user), never
on its command line, which every local user can read in /proc.
"""
from __future__ import annotations

import re
from pathlib import Path

from engines.errors import PERMANENT_EXIT, DfwatchError  # noqa: F401 (PERMANENT_EXIT re-exported)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
SCREEN_PREFIX = "screen:"
SCREEN_FPS = 15.0           # a screen is grabbed at most this often (the analysis samples fewer)
_REGION = re.compile(r"^(?P<left>\d+),(?P<top>\d+),(?P<width>\d+)x(?P<height>\d+)$")
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
    if source.startswith(SCREEN_PREFIX):
        screen_region(source)  # checks the syntax
        return source
    if "://" in source:
        raise SourceError(f"unsupported source URL '{mask_source(source)}': use rtsp://, rtsps://, http:// or https://")
    if not Path(source).is_file():
        raise SourceError(f"no such video file: {source}")
    return source


def source_kind(source: str | int) -> str:
    if isinstance(source, int):
        return "webcam"
    return "url" if source.startswith(URL_SCHEMES) else "screen" if source.startswith(SCREEN_PREFIX) else "file"


def screen_region(source: str) -> int | dict:
    """`screen:` -> monitor 1 (mss counts from 1; 0 is all monitors together); `screen:N` -> monitor
    N; `screen:L,T,WxH` -> that region."""
    spec = source[len(SCREEN_PREFIX):].strip()
    if not spec:
        return 1
    if spec.isdigit():
        return int(spec)
    m = _REGION.match(spec)
    if not m or int(m["width"]) < 16 or int(m["height"]) < 16:
        raise SourceError(f"screen source '{source}': use screen:, screen:MONITOR or screen:LEFT,TOP,WIDTHxHEIGHT "
                          "(display pixels, at least 16x16)")
    return {k: int(v) for k, v in m.groupdict().items()}


class ScreenCapture:
    """A region of the X display read like a camera: `grab()` waits for the next 1/SCREEN_FPS tick
    and takes a picture, `retrieve()` hands it over as BGR. The calls the capture loop makes of a
    cv2.VideoCapture, no more."""

    def __init__(self, source: str, max_fps: float = SCREEN_FPS):
        import time

        try:
            import mss
        except ImportError:
            raise SourceError("screen sources need the mss package (pip install mss)") from None
        region = screen_region(source)
        try:
            self.sct = mss.mss()
        except Exception as e:  # mss raises its own ScreenShotError (no display, no X server)
            raise SourceError(f"cannot open the screen for '{source}': {e}; is DISPLAY set to a running X server "
                              "(Xvfb, or XWayland)?") from None
        monitors = self.sct.monitors
        if isinstance(region, int):
            if not 0 <= region < len(monitors):
                self.sct.close()
                raise SourceError(f"screen source '{source}': no monitor {region} (this display has "
                                  f"{len(monitors) - 1}: screen:1 ... screen:{len(monitors) - 1})")
            region = dict(monitors[region])
        self.region, self.period, self._time = region, 1.0 / max_fps, time
        self.next_t = time.monotonic()
        self.image = None

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoCapture's name)
        return True

    def grab(self) -> bool:
        now = self._time.monotonic()
        if now < self.next_t:
            self._time.sleep(self.next_t - now)
        self.next_t = max(self.next_t + self.period, self._time.monotonic())
        try:
            shot = self.sct.grab(self.region)
        except Exception:  # the display went away, or the region left it: a lost source
            return False
        import numpy as np

        self.image = np.ascontiguousarray(np.frombuffer(shot.bgra, np.uint8).reshape(shot.height, shot.width, 4)[..., :3])
        return True

    def retrieve(self):
        return (self.image is not None), self.image

    def read(self):
        return self.retrieve() if self.grab() else (False, None)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.sct.close()


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
    if isinstance(source, str) and source.startswith(SCREEN_PREFIX):
        return ScreenCapture(source)
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
