"""`dfwatch capture`: one process per stream — read, sample, stamp, push; never block, never grow.

Opens the source with OpenCV (FFmpeg backend with open/read timeouts for URLs and files, the
default backend for webcams), keeps frames at the analysis rate, bounds their size, stamps them
and sends them with a non-blocking PUSH: when the inference process is slow or down the frame is
dropped here and counted. A watchdog thread (with its own socket) reports counters every second,
declares a stall when no frame arrived for `stall_timeout` seconds — even while OpenCV is still
blocked — and kills the process if the read loop hangs, so the supervisor restarts it.

A camera (URL or webcam) is never given up: one that is down at start is retried like a lost one,
with capped exponential backoff and jitter, its state `waiting` (with the last reason) until it
opens. A source that can never work (a missing or undecodable file, an unknown scheme, a negative
webcam index) ends the process with exit code `PERMANENT_EXIT`, which the supervisor does not
restart. A file that ends sends end-of-stream and exits 0. This module imports neither torch nor
model code.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from engines.sources import (SourceError, first_frame_check, mask_source, open_video, parse_source,  # noqa: F401
                             quiet_opencv, source_kind)

cv2 = quiet_opencv()  # before OpenCV loads: its own chatter would bury our one-line errors
import numpy as np  # noqa: E402
import zmq  # noqa: E402

from daemon.wire.curve import Keys, as_client  # noqa: E402
from daemon.wire.protocol import CaptureStats, EndOfStream, Frame  # noqa: E402
from engines.logs import get_logger  # noqa: E402

log = get_logger()
EOS_WAIT_S = 120  # how long an ended file waits for the inference process to take its end of stream
TIMELY_RUN = 3  # consecutive prompt frames that prove a source is live again


# ---- sources -------------------------------------------------------------------------------

def file_frames(path: str, fps: float, max_width: int, max_height: int, open_timeout_ms: int = 5000,
                read_timeout_ms: int = 5000, on_end=None):
    """Yields (pixels, pos_ms, frames read, frames in the file) for the frames a capture process
    sends from this file unpaced — the same decoder, sampling and size bound as `Capture._loop`
    — for `dfwatch scan`, which must score what the daemon would. `on_end(warning)` is told at
    the end whether the file ended early (`ended_early`)."""
    cap = open_video(path, open_timeout_ms, read_timeout_ms)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    sampler, clock, read = Sampler(fps), _FileClock(), 0
    try:
        while cap.grab():
            read += 1
            pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            if not sampler.keep(clock.axis(pos_ms)):
                continue
            ok, frame = cap.retrieve()
            if ok and frame is not None:
                yield fit_size(frame, max_width, max_height), pos_ms, read, max(total, read)
        if on_end:
            on_end(ended_early(read, total))
    finally:
        cap.release()


def ended_early(read: int, declared: int) -> str | None:
    """A warning when decoding stopped well before the frames the container declares (a truncated
    file plays its frames without a word otherwise)."""
    if declared and read < 0.95 * declared - 2:
        return f"the file ended early: {read} of the {declared} frames it declares could be decoded (truncated?)"
    return None


def fit_size(frame: np.ndarray, max_width: int, max_height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = min(1.0, max_width / w, max_height / h)
    if scale >= 1.0:
        return frame
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class Sampler:
    """Keeps frames at `fps` on a time axis (file position or monotonic time): the same file
    always yields the same frames."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def keep(self, t: float) -> bool:
        if self.next_t is None or t < self.next_t - 1.0:  # first frame, or the time axis restarted
            self.next_t = t
        if t + 1e-6 < self.next_t:
            return False
        self.next_t += self.period
        if self.next_t < t:  # fell behind (a gap in the source): realign rather than burst
            self.next_t = t + self.period
        return True


def backoff(failures: int, initial: float, cap: float, jitter: float = 0.0) -> float:
    """Capped exponential delay; `jitter` spreads it by up to ±that fraction, so cameras that
    went down together (a power cut) are not retried in lockstep."""
    delay = min(cap, initial * 2 ** max(0, failures - 1))
    return delay * (1 + random.uniform(-jitter, jitter)) if jitter else delay


# ---- the capture loop ----------------------------------------------------------------------

@dataclass
class Counters:
    frames_read: int = 0
    frames_sent: int = 0
    reconnects: int = 0
    stalls: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    state: str = "connecting"
    detail: str = ""             # why the source is not running (password masked)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class Capture:
    def __init__(self, name: str, source: str | int, settings, fps: float, endpoint: str, send_hwm: int,
                 opener=open_video, context: zmq.Context | None = None, keys: Keys | None = None,
                 stop: threading.Event | None = None, connect_wait_s: float = 0.0):
        self.name, self.source, self.settings, self.fps = name, parse_source(source), settings, fps
        # how long the first frame waits for the connection: IMMEDIATE drops a frame sent before it
        # is up; `dfwatch capture` waits (its inference process is ready), a test may not
        self.connect_wait_s = connect_wait_s
        self.kind = source_kind(self.source)
        self.endpoint, self.send_hwm, self.opener, self.keys = endpoint, send_hwm, opener, keys
        self.context = context or zmq.Context.instance()
        self.counters = Counters()
        self.stop = stop or threading.Event()
        self.last_frame = time.monotonic()
        self.last_progress = time.monotonic()
        self.stalled = False
        self.seq = 0
        self.last_read: float | None = None  # source time of the previous frame read
        self.gap = 0.0                       # longest pause between reads since the last frame sent

    # -- sockets ------------------------------------------------------------------------------
    def _push_socket(self) -> zmq.Socket:
        s = self.context.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDHWM, self.send_hwm)
        s.setsockopt(zmq.LINGER, 1000)  # let a final end-of-stream go out, briefly
        s.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a connected peer: inference down -> drop, not buffer
        as_client(s, self.keys)  # CURVE keys for a tcp endpoint
        s.connect(self.endpoint)
        return s

    def _stats(self) -> CaptureStats:
        c = self.counters
        return CaptureStats(self.name, c.frames_read, c.frames_sent, c.reconnects, c.stalls, dict(c.dropped), c.state,
                            c.detail)

    # -- watchdog thread ----------------------------------------------------------------------
    def _watchdog(self) -> None:
        sock = self._push_socket()
        s = self.settings
        hang_limit = max(30.0, 3 * s.stall_timeout + (s.open_timeout_ms + s.read_timeout_ms) / 1000)
        last_stats = 0.0
        try:
            while not self.stop.wait(0.2):
                now = time.monotonic()
                report = now - last_stats >= 1.0
                # only while running: an open has its own timeout, a camera that was down has no last
                # frame to measure from, and an outage already being reopened (backoff) is counted
                # once, as the reconnect that ends it, not as a stall too
                if self.counters.state == "running" and not self.stalled and now - self.last_frame > s.stall_timeout:
                    self._count_stall("stream stalled: no frame, reopening", seconds=round(now - self.last_frame, 1))
                    report = True
                if now - self.last_progress > hang_limit:
                    log.error("capture loop hung inside OpenCV; exiting so the supervisor restarts it",
                              seconds=round(now - self.last_progress, 1))
                    os._exit(3)
                if report:
                    _send_nowait(sock, self._stats().encode())
                    last_stats = now
        finally:
            _send_nowait(sock, self._stats().encode())
            sock.close()

    def _count_stall(self, message: str, **fields) -> None:
        """One stall per incident (the watchdog's clock or a read that timed out, whichever first);
        its reopen is not counted as a reconnect too."""
        if not self.stalled:
            self.stalled = True
            self.counters.stalls += 1
            log.warning(message, **fields)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> int:
        """Runs until stopped (exit 0) or the file ends (exit 0); raises SourceError for a source
        that can never work. A camera that is down is waited for, however long."""
        sock = self._push_socket()
        if self.connect_wait_s:
            sock.poll(int(self.connect_wait_s * 1000), zmq.POLLOUT)
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        watchdog.start()
        cap = None
        try:
            cap = self._first_open()
            if cap is None:  # stopped while waiting
                return 0
            log.info("opened", source=mask_source(self.source), kind=self.kind, fps=self.fps)
            self.last_frame, self.stalled = time.monotonic(), False
            self.counters.state, self.counters.detail = "running", ""
            return self._loop(cap, sock)
        finally:
            self.stop.set()
            watchdog.join(timeout=2)
            if cap is not None:
                cap.release()
            sock.close()

    def _first_open(self) -> cv2.VideoCapture | None:
        """Opens the source. A file must open and decode now; a camera is retried until it opens."""
        s = self.settings
        if self.kind == "file":
            first_frame_check(self.source, self.opener)
            return self.opener(self.source, s.open_timeout_ms, s.read_timeout_ms)
        failures = 0
        while not self.stop.is_set():
            self.counters.state = "connecting"
            self.last_progress = time.monotonic()
            try:
                return self.opener(self.source, s.open_timeout_ms, s.read_timeout_ms)
            except SourceError as e:
                failures += 1
                self.counters.state, self.counters.detail = "waiting", str(e)
                if failures == 1 or failures % 10 == 0:
                    log.warning("source not available yet; retrying until it is", error=str(e), attempt=failures)
                self._sleep(backoff(failures, s.reconnect_initial, s.reconnect_max, jitter=0.2))
        return None

    def _sleep(self, seconds: float) -> None:
        """Waits (stoppably), showing the watchdog that this is waiting, not a hang."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            self.last_progress = time.monotonic()
            self.stop.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _loop(self, cap: cv2.VideoCapture, sock: zmq.Socket) -> int:
        sampler = Sampler(self.fps)
        clock = _FileClock() if self.kind == "file" else None
        timely = TIMELY_RUN
        read_before = self.counters.frames_read  # frames read before this pass over a file
        while not self.stop.is_set():
            self.last_progress = time.monotonic()
            if self.stalled:
                cap = self._reopen(cap, reason="stall")
                continue
            began = time.monotonic()
            if not cap.grab():
                if self.kind == "file":
                    if warning := ended_early(self.counters.frames_read - read_before,
                                              int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)):
                        log.warning(warning, file=self.source)
                    read_before = self.counters.frames_read
                    if not self.settings.loop:
                        return self._end(sock)
                    cap = self._reopen(cap, reason="loop")
                    clock.restart()
                    continue
                if time.monotonic() - began >= 0.8 * self.settings.read_timeout_ms / 1000:
                    # the read timed out: the connection is open and sends nothing (a hung camera)
                    self._count_stall("stream stalled: the read timed out, reopening")
                    cap = self._reopen(cap, reason="stall")
                    continue
                log.warning("read failed: source lost, reconnecting")
                cap = self._reopen(cap, reason="lost")
                continue
            now = time.monotonic()
            # A frame OpenCV hands over only after its read timeout (and the few buffered ones right
            # after it) is a decoder flushing old data from a hung source, not a live frame: only
            # a run of timely frames resets the stall clock.
            timely = timely + 1 if now - began < 0.8 * self.settings.read_timeout_ms / 1000 else 0
            if timely >= TIMELY_RUN:
                self.last_frame, self.stalled = now, False
            self.counters.frames_read += 1
            pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC) if clock else None
            t_axis = clock.axis(pos_ms) if clock else now
            if self.last_read is not None:  # an outage shows as a pause on the source's time axis
                self.gap = max(self.gap, t_axis - self.last_read)
            self.last_read = t_axis
            if not sampler.keep(t_axis):
                continue
            if clock and self.settings.pace:
                clock.wait_until(t_axis, self.stop)
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                self.counters.drop("decode_error")
                continue
            self._send(sock, fit_size(frame, self.settings.max_width, self.settings.max_height), pos_ms)
        return 0

    def _send(self, sock: zmq.Socket, pixels: np.ndarray, pos_ms: float | None) -> None:
        def message() -> list:  # stamped when it is queued
            return Frame(self.name, self.seq, time.time(), time.monotonic(), pixels, pos_ms,
                         gap_s=round(self.gap, 3)).encode()
        if self.kind == "file" and not self.settings.pace:
            sent = self._send_blocking(sock, message)  # as fast as the consumer takes
        else:
            sent = _send_nowait(sock, message())
        if sent:
            self.seq += 1
            self.gap = 0.0
            self.counters.frames_sent += 1
        else:
            self.counters.drop("queue_full")

    def _send_blocking(self, sock: zmq.Socket, message) -> bool:
        """Waits for room, then sends `message()`: a frame of an unpaced file is stamped when the
        consumer can take it, not when it was read, so waiting never makes it stale."""
        self.counters.state = "blocked"
        try:
            while not self.stop.is_set():
                self.last_progress = time.monotonic()
                if sock.poll(200, zmq.POLLOUT) and _send_nowait(sock, message()):
                    return True
            return False
        finally:
            self.counters.state = "running"
            self.last_frame = time.monotonic()

    def _end(self, sock: zmq.Socket) -> int:
        """Delivers the end of stream, which closes the stream's final window: a control message,
        not a frame, so it waits for room (no frame is sent after it, so the queue drains) rather
        than being dropped when the inference process is busy."""
        self.counters.state = "ended"
        eos = EndOfStream(self.name, self.seq - 1).encode()
        deadline = time.monotonic() + EOS_WAIT_S
        log.info("end of file: delivering the end of stream")
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.last_progress = time.monotonic()  # waiting, not hung
            if sock.poll(200, zmq.POLLOUT) and _send_nowait(sock, eos):
                # queued is not delivered: the socket keeps it (and the frames before it) for the
                # rest of the wait after close, and the process waits for that (see cli._capture)
                sock.setsockopt(zmq.LINGER, max(1000, int((deadline - time.monotonic()) * 1000)))
                log.info("end of file: stream ended", frames_sent=self.counters.frames_sent)
                return 0
        log.warning("end of stream not delivered: the inference process took nothing for "
                    f"{EOS_WAIT_S} s (down?); it closes the stream when it evicts it", frames_sent=self.counters.frames_sent)
        return 0

    def _reopen(self, cap: cv2.VideoCapture, reason: str) -> cv2.VideoCapture:
        """Reopens with capped exponential backoff until it works or we are stopped."""
        cap.release()
        failures = 0
        s = self.settings
        while not self.stop.is_set():
            if reason != "loop" or failures:
                self.counters.state = "backoff"
                self._sleep(backoff(failures + 1, s.reconnect_initial, s.reconnect_max, jitter=0.2))
            self.counters.state = "connecting"
            self.last_progress = time.monotonic()
            try:
                cap = self.opener(self.source, s.open_timeout_ms, s.read_timeout_ms)
            except SourceError as e:
                failures += 1
                self.counters.detail = str(e)
                if failures <= 3 or failures % 10 == 0:
                    log.warning("reopen failed", error=str(e), attempt=failures)
                continue
            if reason == "lost":   # an outage counts once, as this reconnect; a stall counted itself
                self.counters.reconnects += 1
            if reason != "loop":
                log.info("reconnected", after=reason, attempts=failures + 1)
            self.counters.state, self.counters.detail = "running", ""
            self.last_frame, self.stalled = time.monotonic(), False
            return cap
        return cap


class _FileClock:
    """Maps file positions to one time axis across loops, and paces reading to real time."""

    def __init__(self):
        self.offset = 0.0
        self.last = 0.0
        self.start: float | None = None

    def axis(self, pos_ms: float) -> float:
        self.last = self.offset + pos_ms / 1000.0
        return self.last

    def restart(self) -> None:
        self.offset = self.last + 1e-3

    def wait_until(self, t: float, stop: threading.Event) -> None:
        if self.start is None:
            self.start = time.monotonic() - t
        delay = self.start + t - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def stop_on_signal(stop: threading.Event, finished: threading.Event, grace_s: float = 2.0) -> None:
    """SIGTERM/SIGINT set `stop` even while the main thread is blocked inside OpenCV: a camera that
    never answers holds an FFmpeg open for open_timeout_ms, and Python runs a signal handler only
    once the main thread returns from C. The C-level handler still writes the signal to a wakeup
    fd at once, which a thread of its own reads; if the process has not `finished` `grace_s`
    later, it exits at once (nothing is in flight while a source is opening or reading). Call it
    from the main thread."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.set_wakeup_fd(w)

    def take() -> None:
        os.read(r, 1)
        stop.set()
        if not finished.wait(grace_s):
            log.warning("stopping while OpenCV is still blocked on the source; exiting now")
            os._exit(0)

    threading.Thread(target=take, name="signals", daemon=True).start()


def _send_nowait(sock: zmq.Socket, parts: list) -> bool:
    try:
        sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        return True
    except zmq.Again:
        return False
