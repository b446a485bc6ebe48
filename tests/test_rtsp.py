"""A real RTSP camera on 127.0.0.1 (GStreamer's RTSP server): outages, restarts and stalls."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from helpers.daemon import Subscriber, daemon_env, start, stop

SYSTEM_PYTHON = "/usr/bin/python3"
HELPER = REPO / "tests" / "helpers" / "rtsp_server.py"


def _has_rtsp_server() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run([SYSTEM_PYTHON, "-c", probe],
                                                            capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _has_rtsp_server(), reason=(
    "needs GStreamer's RTSP server for the system Python (apt-get install python3-gi "
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; scripts/setup.sh "
    "installs them when run as root)"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    def __init__(self, video: Path, port: int):
        self.video, self.port, self.proc = video, port, None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(HELPER), str(self.video), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"RTSP server did not start: {line}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.kill()


@pytest.fixture
def camera(footage):
    server = RtspServer(footage / "franck.mp4", free_port())
    server.start()
    yield server
    server.close()


def stream_status(sub: Subscriber, name: str) -> dict:
    return sub.statuses[-1].streams.get(name, {}) if sub.statuses else {}


def test_rtsp_outage_restart_and_stall(camera, small_bundle, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    stall_timeout = 3.0
    proc = start(["run", "--bundle", str(small_bundle), "--stream", f"cam={camera.url}",
                  "--set", "window.stride=2", "--set", "capture.fps=2", "--set", f"capture.stall_timeout={stall_timeout}",
                  "--set", "capture.reconnect_initial=0.2", "--set", "capture.reconnect_max=1",
                  "--set", "capture.read_timeout_ms=1000", "--set", "capture.open_timeout_ms=2000",
                  "--set", "inference.status_interval=0.25"], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: s.of("cam"), 90, "a verdict from the RTSP camera", log)

        # 1. the camera dies and comes back on the same port: reconnect, verdicts resume
        camera.kill()
        time.sleep(1.5)
        camera.start()
        sub.wait_for(lambda s: stream_status(s, "cam").get("reconnects", 0) >= 1, 30, "a counted reconnect", log)
        sub.verdicts.clear()
        sub.wait_for(lambda s: len(s.of("cam")) >= 2, 60, "verdicts after the camera came back", log)

        # 2. the camera hangs (connection open, no data): a stall within stall_timeout + 1 s
        sub.wait_for(lambda s: stream_status(s, "cam").get("state") == "running" and
                     stream_status(s, "cam").get("last_frame_age_s", 9) < 1, 30, "frames flowing", log)
        stalls_before = stream_status(sub, "cam").get("stalls", 0)
        os.kill(camera.proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        sub.wait_for(lambda s: stream_status(s, "cam").get("stalls", 0) > stalls_before, stall_timeout + 5,
                     "the stall to show in status", log)
        detected_after = time.monotonic() - stopped_at
        assert detected_after <= stall_timeout + 1, f"stall seen in status after {detected_after:.2f} s"
        os.kill(camera.proc.pid, signal.SIGCONT)
        sub.verdicts.clear()
        sub.wait_for(lambda s: s.of("cam"), 60, "verdicts after the stall", log)
    finally:
        sub.close()
        assert stop(proc) == 0
