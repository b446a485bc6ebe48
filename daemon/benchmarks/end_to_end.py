"""End to end: `dfwatch run` on N copies of the footage, read as a client reads it (verdicts,
alerts, status), with every process's CPU and memory sampled."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from daemon.benchmarks.soak import memory_mb, stop_daemon
from daemon.benchmarks.common import _children


def rss_peak_mb(pid: int) -> float:
    return memory_mb(pid, "VmHWM")


def end_to_end(bundle_dir: Path, footage: Path, streams: int, seconds: float, stride: int, family: str,
               overrides: tuple[str, ...] = (), startup: float = 120) -> dict:
    from daemon.wire.protocol import Alert, Verdict
    from daemon.wire.subscriber import receive, subscribe

    runtime = Path(tempfile.mkdtemp(prefix="dfwatch-bench-"))
    env = {**os.environ, "DFWATCH__ENDPOINTS__RUNTIME_DIR": str(runtime), "DFWATCH__LOGGING__LEVEL": "warning",
           "DFWATCH__EVIDENCE__DIR": str(runtime / "evidence")}
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle_dir), "--set", "capture.loop=true",
            "--set", f"window.stride={stride}"]
    for item in overrides:
        argv += ["--set", item]
    for i in range(streams):
        argv += ["--stream", f"s{i}={footage}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = subscribe(f"ipc://{runtime}/verdicts", None)
    latencies, statuses, peaks, first, alerts = [], [], {}, None, 0
    usage = UsageSampler(proc.pid)
    next_peak = 0.0
    try:
        deadline = time.monotonic() + seconds + startup
        while time.monotonic() < deadline:
            msg = receive(sub, 0.5)  # verdicts, alerts and status, each validated
            if msg is None:
                continue
            if isinstance(msg, Alert):
                alerts += msg.state == "start"
            elif isinstance(msg, Verdict):
                if first is None:
                    first = time.monotonic()  # measure from the first verdict: steady state
                    deadline = first + seconds
                    usage.start()
                else:
                    latencies.append(msg.latency_ms)
            elif first is not None:
                statuses.append(msg)
            if time.monotonic() >= next_peak:  # /proc walks are slow with hundreds of children
                next_peak = time.monotonic() + 2
                for pid, cmd in _children(proc.pid).items():
                    peaks[cmd] = max(peaks.get(cmd, 0.0), rss_peak_mb(pid))
    finally:
        sub.close()
        use = usage.stop()
        stop_daemon(proc)
        shutil.rmtree(runtime, ignore_errors=True)
    return {"family": family, **_summarise(streams, seconds, latencies, statuses, peaks), **use, "alerts": alerts}


class UsageSampler:
    """CPU use of the inference and capture processes (cores busy) and GPU utilisation (nvidia-smi,
    when there is one) over the steady state of an end-to-end run."""

    def __init__(self, root_pid: int):
        import threading

        self.root_pid, self.stop_event, self.gpu = root_pid, threading.Event(), []
        self.thread = threading.Thread(target=self._sample_gpu, daemon=True)
        self.cpu_start: dict[str, float] = {}
        self.t_start = 0.0

    def _cpu(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        out = {"infer": 0.0, "capture": 0.0}
        for pid, role in _children(self.root_pid).items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            key = "capture" if role.startswith("capture") else "infer" if role == "infer" else None
            if key:
                out[key] += (int(fields[11]) + int(fields[12])) / ticks
        return out

    def _sample_gpu(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                text = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=5).stdout
                self.gpu.append(float(text.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def start(self) -> None:
        self.cpu_start, self.t_start = self._cpu(), time.monotonic()
        self.thread.start()

    def stop(self) -> dict:
        if not self.t_start:
            return {}
        self.stop_event.set()
        span = time.monotonic() - self.t_start
        end = self._cpu()
        out = {"cores_busy": {k: round((end[k] - self.cpu_start.get(k, 0.0)) / span, 2) for k in end}}
        if self.gpu:
            out["gpu_util_pct"] = round(float(np.mean(self.gpu)), 1)
        return out


def _summarise(streams, seconds, latencies, statuses, peaks) -> dict:
    if len(statuses) < 2:
        return {"streams": streams, "error": "no steady state reached (no verdict within the time limit)"}
    a, b = statuses[0], statuses[-1]
    span = b.t - a.t
    before = {n: s.analysed for n, s in a.streams.items()}
    per_stream = {n: (s.analysed - before.get(n, 0)) / span for n, s in b.streams.items()}
    dropped: dict[str, int] = {}
    for st in b.streams.values():
        for reason, n in st.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    lat = np.array(latencies) if latencies else np.array([np.nan])
    stages = {k: {**v, "busy": round((v["seconds"] - a.stages.get(k, {}).get("seconds", 0.0)) / span, 3)}
              for k, v in b.stages.items()}
    return {"streams": streams, "seconds": round(span, 1), "analysed_fps_per_stream": per_stream, "stages": stages,
            "analysed_fps_total": sum(per_stream.values()), "dropped": dropped,
            "queue_depth_end": {n: s.queue_depth for n, s in b.streams.items()},
            "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p95": float(np.nanpercentile(lat, 95)),
                           "p99": float(np.nanpercentile(lat, 99)), "verdicts": len(latencies)},
            "peak_rss_mb": peaks,
            "infer_rss_mb_per_stream": round(peaks.get("infer", 0.0) / max(1, streams), 1)}

