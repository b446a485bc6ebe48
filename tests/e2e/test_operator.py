"""What an operator sees: progress off a terminal, stream state changes in `watch`."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from daemon.wire.protocol import Status, Verdict
from helpers.daemon import against_publisher


def test_progress_is_log_lines_not_a_bar_off_a_terminal():
    code = ("from engines.logs import configure_logging; from training.extract import progress; "
            "configure_logging('train', 'info', 'json'); print(sum(progress(list(range(5)), 'extract', 'video', 0)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "10"
    assert "\r" not in r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    assert lines[-1]["event"] == "progress" and lines[-1]["done"] == lines[-1]["total"] == 5
    assert all(line["stage"] == "extract" for line in lines)


def test_watch_status_shows_stream_state_changes(tmp_path):
    def status(t, door, lobby="running"):
        return Status(t=t, uptime_s=t, model="m", backend="torch",
                      streams={"door": {"state": door}, "lobby": {"state": lobby}}).encode()

    def publish(pub, done):
        pub.wait_for_subscriber()  # the first states must arrive: sent once each
        for t, state in enumerate(["running", "running", "backoff", "backoff", "running"]):
            pub.send_multipart(status(float(t), state))
            time.sleep(0.1)
        while not done.is_set():  # then the verdict that ends `--count 1`
            pub.send_multipart(Verdict(stream="door", window=0, seq_first=0, seq_last=1, t_first=0.0, t_last=1.0,
                                       score=0.2, label="real", threshold=0.5, faces=2, frames=2, model="m",
                                       backend="torch", latency_ms=1.0).encode())
            time.sleep(0.1)

    r = against_publisher(tmp_path, publish, ["watch", "--stream", "door", "--json", "--status", "--count", "1"])
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    changes = [(x["state"], x["previous"]) for x in lines if "previous" in x]
    assert changes == [("running", None), ("backoff", "running"), ("running", "backoff")]
    assert all(x["stream"] == "door" for x in lines) and lines[-1]["label"] == "real"


def test_bench_measures_what_alerts_and_evidence_cost(footage):
    from daemon.benchmarks.cpu import markdown
    from daemon.benchmarks.stages import alerts_evidence_cost

    a = alerts_evidence_cost(footage / "franck.mp4", 4, 8, 1)
    assert 0 < a["frame_keep_ms"] < a["per_verdict_ms"] and a["evidence_write_ms"] > a["evidence_handover_ms"] > 0
    assert a["memory_mb_per_stream"] == (8 + 2 * 4 + 8) * 320 * 240 * 3 / 2 / 2**20  # I420: 1.5 bytes a pixel
    ceiling = {"threads": 2, "gflops": 100.0, "torch_gflops": 90.0, "numpy_gflops": 100.0}
    text = markdown({"machine": "m", "ceiling": ceiling, "stages": [], "decode": {"video": "v", "fps": 1.0},
                     "detect_width": 320, "mtcnn_ms": {}, "per_frame": {"dldfd_s": 0.1}, "alerts_evidence": a,
                     "end_to_end": []})
    assert "Alerts and evidence in the inference loop" in text and "DLDFD" in text


def test_bench_end_to_end_reads_verdicts_alerts_and_status(dldfd_bundle, footage):
    """The benchmark's own subscriber on a real `dfwatch run` (every window fake, so alerts flow)."""
    from daemon.benchmarks.end_to_end import end_to_end

    run = end_to_end(dldfd_bundle, footage / "franck.mp4", 1, 4.0, 2, "dldfd",
                     ("capture.fps=4", "inference.threshold=0.0", "metrics.port=0"), startup=90)
    assert "error" not in run, run
    assert run["analysed_fps_total"] > 0 and run["latency_ms"]["verdicts"] >= 1 and run["alerts"] == 1
    assert run["cores_busy"]["infer"] > 0 and "infer" in run["peak_rss_mb"]
    assert run["infer_rss_mb_per_stream"] == round(run["peak_rss_mb"]["infer"], 1) > 100  # one stream


def test_onnx_sessions_plan_no_memory_pattern_per_batch_size(dldfd_bundle):
    """ONNX Runtime's memory patterns (one full set of buffers per batch size, kept by an arena that
    never shrinks) grew the inference process by over a GB; dfwatch's sessions are made without
    them ('dfwatch bench --memory' measures both: the same speed)."""
    from engines.backends.onnx_runner import OnnxRunner
    from engines.bundles.bundle import load_bundle

    bundle = load_bundle(dldfd_bundle)
    runner = OnnxRunner("frame", bundle.onnx_path("frame"), 1, providers=["CPUExecutionProvider"])
    assert runner.session.get_session_options().enable_mem_pattern is False
    with_patterns = OnnxRunner("frame", bundle.onnx_path("frame"), 1, providers=["CPUExecutionProvider"],
                               memory_patterns=True)  # what the benchmark compares against
    assert with_patterns.session.get_session_options().enable_mem_pattern is True
