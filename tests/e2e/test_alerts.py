"""Alert events from the real inference process: start / update / end for real footage, with
evidence, metrics and `dfwatch health` (the rule itself: tests/unit/test_alert_rule.py)."""
from __future__ import annotations

import subprocess

import zmq

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.wire.protocol import BridgeStats, CaptureStats, EndOfStream, Frame
from helpers import monitoring
from helpers.daemon import DFWATCH, Subscriber, against_publisher, daemon_env, free_port, start, stop
from helpers.verdicts import feed, verdict


# ---- the real inference process ---------------------------------------------------------------

def _serve(bundle, frames, work, threshold: float, metrics_port: int = 0):
    """dfwatch infer on the DLDFD test bundle with every window fake (threshold 0) or none (1):
    real frames of franck.mp4 for stream 'cam', then its end."""
    runtime = work / f"run{threshold}"
    runtime.mkdir()
    log = work / f"infer{threshold}.log"
    proc = start(["infer", "--bundle", str(bundle), "--set", "window.stride=2", "--set", "alerts.update_every=3",
                  "--set", f"inference.threshold={threshold}", "--set", "inference.status_interval=0.3",
                  "--set", f"metrics.port={metrics_port}",
                  "--set", "inference.max_frame_age_s=0"], daemon_env(runtime), log)  # frames with recorded times
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"ipc://{runtime}/frames")
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    sub.wait_for(lambda s: s.statuses, 60, "the inference process to serve", log)
    for i, pixels in enumerate(frames):
        push.send_multipart(Frame("cam", i, 1000.0 + i / 4, float(i), pixels).encode())
    push.send_multipart(EndOfStream("cam", len(frames) - 1).encode())
    return proc, push, sub, runtime, log


def scrape_text(port: int) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples, 'name{labels}' -> value."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in scrape_text(port).splitlines()
            if line and not line.startswith("#")}


def test_inference_publishes_alerts_with_evidence_metrics_and_health(dldfd_bundle, franck_frames, tmp_path):
    import cv2

    frames = franck_frames[:24]
    port = free_port()
    proc, push, sub, runtime, log = _serve(dldfd_bundle, frames, tmp_path, 0.0, port)
    try:
        sub.wait_for(lambda s: any(a.state == "end" for a in s.alerts), 90, "the alert's end", log)
        verdicts = sub.of("cam")
        assert verdicts and all(v.label == "fake" for v in verdicts)
        alerts = sub.alerts
        assert [a.state for a in alerts][0] == "start" and alerts[-1].state == "end"
        assert {a.state for a in alerts[1:-1]} == {"update"} and len(alerts) >= 3
        assert len({a.alert_id for a in alerts}) == 1 and all(a.untrained and a.model == "test-dldfd" for a in alerts)
        assert alerts[-1].windows == len(verdicts) and alerts[-1].t_end == verdicts[-1].t_last
        assert alerts[0].t_start == verdicts[0].t_first

        # evidence: the opening window as video and contact sheet, and every message of the alert;
        # the start goes out before they exist, so an update names them once written
        first = alerts[0]
        named = next(a for a in alerts if a.evidence)
        assert first.evidence is None and named.state == "update"
        assert named.evidence == [f"cam/{first.alert_id}/{n}" for n in ("window.webm", "faces.jpg", "alert.json")]
        assert all(a.evidence == named.evidence for a in alerts[alerts.index(named):])
        folder = runtime / "evidence" / "cam" / first.alert_id
        sub.wait_for(lambda s: (folder / "alert.json").exists() and
                     len(__import__("json").loads((folder / "alert.json").read_text())) == len(alerts), 30,
                     "alert.json with every message")
        cap, n = cv2.VideoCapture(str(folder / "window.webm")), 0
        while cap.read()[0]:
            n += 1
        assert n >= 8 and cv2.imread(str(folder / "faces.jpg")) is not None  # T = 8 frames in the test bundle

        sub.wait_for(lambda s: s.statuses[-1].streams["cam"].frames_in == len(frames), 10, "the status")
        push.send_multipart(BridgeStats("0-mqtt", "mqtt", delivered=4, dropped=1, queue=2, connected=True).encode())
        sub.wait_for(lambda s: "0-mqtt" in s.statuses[-1].bridges, 10, "the bridge's counters in the status")
        text = scrape_text(port)
        m = scrape(port)
        assert m['dfwatch_frames_received_total{stream="cam"}'] == len(frames)
        assert m['dfwatch_stream_state{state="ended",stream="cam"}'] == 1  # the file ended
        assert m['dfwatch_stream_state{state="running",stream="cam"}'] == 0
        assert m['dfwatch_bridge_messages_total{bridge="0-mqtt",outcome="dropped",type="mqtt"}'] == 1
        assert m['dfwatch_bridge_queue{bridge="0-mqtt",type="mqtt"}'] == 2
        assert m['dfwatch_evidence_alerts_total{outcome="written"}'] == 1 and m["dfwatch_evidence_bytes"] > 10_000
        assert m["process_resident_memory_bytes"] > 100e6  # the RSS to hold against MemoryMax
        monitoring.check_against(text)  # the shipped rules and Grafana dashboard query what is here
        assert m['dfwatch_verdicts_total{label="fake",stream="cam"}'] == len(verdicts)
        assert m['dfwatch_alerts_total{stream="cam"}'] == 1 and m['dfwatch_alert_active{stream="cam"}'] == 0
        assert m['dfwatch_verdict_latency_seconds_count'] == len(verdicts)
        assert m['dfwatch_model_seconds_count{part="frame"}'] >= 1 and m['dfwatch_model_seconds_count{part="detect"}'] >= 1
        assert any(k.startswith("dfwatch_build_info{") and 'model="test-dldfd"' in k for k in m)
        assert 0 <= m["dfwatch_loop_age_seconds"] < 60                      # the loop turns
        assert not [k for k in m if "_created" in k]                        # no timestamp series posing as gauges

        endpoint = f"ipc://{runtime}/verdicts"
        ok = subprocess.run(DFWATCH + ["health", "--endpoint", endpoint], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and ok.stdout.startswith("healthy: 1 stream(s)"), ok.stdout + ok.stderr
        push.send_multipart(CaptureStats("lobby", state="backoff").encode())  # a camera that went away
        sub.wait_for(lambda s: s.statuses and "lobby" in s.statuses[-1].streams, 30, "the lost camera's status")
        bad = subprocess.run(DFWATCH + ["health", "--endpoint", endpoint], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1
        assert bad.stderr.strip() == "unhealthy: stream lobby is waiting to reconnect to its source (backoff)"
        assert 'dfwatch_frames_received_total{stream="lobby"}' in scrape(port)
    finally:
        push.close()
        sub.close()
        assert stop(proc) == 0
    import time

    from daemon.clients.watch import health

    began = time.monotonic()  # the inference process has just stopped
    code, line = health(f"ipc://{runtime}/verdicts", max_age=1.0)
    assert code == 1 and line.startswith("unhealthy: no status message") and time.monotonic() - began <= 2.0
    gone = subprocess.run(DFWATCH + ["health", "--endpoint", f"ipc://{runtime}/verdicts", "--max-age", "1"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "no status message" in gone.stderr and len(gone.stderr.splitlines()) == 1


def test_no_alert_when_no_window_is_fake(dldfd_bundle, franck_frames, tmp_path):
    proc, push, sub, runtime, log = _serve(dldfd_bundle, franck_frames[:16], tmp_path, 1.0)
    try:
        sub.wait_for(lambda s: s.stream("cam").state == "ended", 90,
                     "the stream to end", log)
        sub.pump(0.5)
        assert sub.of("cam") and all(v.label == "real" for v in sub.of("cam")) and sub.alerts == []
    finally:
        push.close()
        sub.close()
        assert stop(proc) == 0


def test_watch_stream_is_exact_and_shows_alerts_on_request(tmp_path):
    """ZeroMQ topics match by prefix: `--stream door` must not show door2 or door.back."""
    import json
    import time

    def publish(pub, done):
        t = 0.0
        while not done.is_set():
            t += 1
            for name in ("door2", "door.back", "door"):
                pub.send_multipart(verdict("fake", t, stream=name).encode())
            for name in ("door", "door2"):
                opened = feed(AlertTracker(name, AlertRules(open_after=1, open_of=1)), "f", t0=t, stream=name)
                pub.send_multipart(opened[0][1].encode())
            time.sleep(0.05)

    r = against_publisher(tmp_path, publish, ["watch", "--stream", "door", "--json", "--alerts", "--count", "4"])
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert {line["stream"] for line in lines} == {"door"}
    assert any("alert_id" in line for line in lines) and sum("alert_id" not in line for line in lines) == 4


# ---- operator defects (issue 12) ----------------------------------------------------------------

def test_json_lines_carry_the_journald_priority_only_on_the_journal(tmp_path, monkeypatch):
    from engines.logs import configure_logging, get_logger

    try:
        _log_to_files(tmp_path, monkeypatch, configure_logging, get_logger)
    finally:
        configure_logging("test", "info", "json")


def _log_to_files(tmp_path, monkeypatch, configure_logging, get_logger):
    import os

    path = tmp_path / "journal"
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure_logging("infer", "info", "json", stream=f)
        get_logger().warning("stream lost", stream="door")
        get_logger().info("verdict")
    lines = path.read_text().splitlines()
    assert lines[0].startswith('<4>{"') and '"event": "stream lost"' in lines[0] and lines[1].startswith("<6>{")
    other = tmp_path / "file"
    with open(other, "w") as f:  # JOURNAL_STREAM names another file: plain JSON lines
        configure_logging("infer", "info", "json", stream=f)
        get_logger().warning("x")
    assert other.read_text().startswith("{")


def test_infer_takes_no_stream_option():
    r = subprocess.run(DFWATCH + ["infer", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--bundle" in r.stdout and "--stream" not in r.stdout
