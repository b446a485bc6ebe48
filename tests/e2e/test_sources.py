"""Stream sources: a camera password never appears in a log line, an error or a command line, and
`config check` refuses sources that can never work."""
from __future__ import annotations

import subprocess
import time

from engines.sources import mask_source
from helpers.daemon import DFWATCH, children, daemon_env, start, stop

SECRET = "s3cr3t-pw"
CAMERA = f"rtsp://admin:{SECRET}@127.0.0.1:9/live"  # port 9 (discard): the connection is refused at once


def test_mask_source_hides_only_the_password():
    assert mask_source(CAMERA) == "rtsp://admin:***@127.0.0.1:9/live"
    assert mask_source(f"cannot open stream {CAMERA}: check") == "cannot open stream rtsp://admin:***@127.0.0.1:9/live: check"
    assert mask_source("rtsp://cam.local/1") == "rtsp://cam.local/1" and mask_source(3) == "3"
    assert mask_source("https://user:p%40ss@host/x") == "https://user:***@host/x"


def test_password_reaches_no_log_line_and_no_command_line(small_bundle, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "run.log"
    proc = start(["run", "--bundle", str(small_bundle), "--stream", f"door={CAMERA}"], daemon_env(runtime), log)
    try:
        deadline, command_lines = time.monotonic() + 60, []
        while time.monotonic() < deadline and "cannot open stream" not in log.read_text(errors="replace"):
            command_lines += list(children(proc.pid).values())
            time.sleep(0.2)
        assert "cannot open stream rtsp://admin:***@127.0.0.1:9/live" in log.read_text(errors="replace")
        assert any(" capture " in c for c in command_lines), "the capture process was never seen"
        assert not [c for c in command_lines if SECRET in c], "a password on a command line"
    finally:
        stop(proc)
    assert SECRET not in log.read_text(errors="replace")


def config_check(tmp_path, source: str) -> subprocess.CompletedProcess:
    path = tmp_path / "site.yaml"
    path.write_text(f"streams:\n  - name: door\n    source: '{source}'\n")
    return subprocess.run(DFWATCH + ["config", "check", str(path)], capture_output=True, text=True,
                          env=daemon_env(tmp_path))


def test_config_check_refuses_sources_that_can_never_work(tmp_path, footage):
    r = config_check(tmp_path, "rtps://typo/stream")
    assert r.returncode == 2 and "streams: door: unsupported source URL 'rtps://typo/stream'" in r.stderr
    r = config_check(tmp_path, str(tmp_path / "missing.mp4"))
    assert r.returncode == 2 and "streams: door: no such video file" in r.stderr
    r = config_check(tmp_path, "-1")
    assert r.returncode == 2 and "webcam index -1 is invalid" in r.stderr
    r = config_check(tmp_path, CAMERA)  # a camera may be down now: its URL is well-formed, that is all we check
    assert r.returncode == 0, r.stderr
    assert "rtsp://admin:***@127.0.0.1:9/live" in r.stdout and SECRET not in r.stdout + r.stderr
    assert config_check(tmp_path, str(footage / "franck.mp4")).returncode == 0
