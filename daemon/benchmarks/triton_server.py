"""`dfwatch bench --triton`: the Triton backend against in-process ONNX Runtime, in one run.

Starts `dfwatch serve-models` for the family's demo bundle on free loopback ports, then measures
(1) the per-call cost of each part through Triton and in process, at batch 1 and at the daemon's
CPU batch (8), and (2) end-to-end analysed frames/s: one inference process with ONNX Runtime, one
with Triton, and two inference processes sharing the Triton server, each with one looped stream.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from daemon.benchmarks.soak import stop_daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_model_server(bundle_dir: Path, workdir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    grpc, http, metrics = _free_port(), _free_port(), _free_port()
    log = open(workdir / "serve-models.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engines.cli", "serve-models", str(bundle_dir), "--port", str(grpc),
                             "--http-port", str(http), "--metrics-port", str(metrics), "--threads", str(threads)],
                            stdout=log, stderr=log,
                            env={**os.environ, "DFWATCH__LOGGING__FORMAT": "json"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1).status == 200:
                return proc, f"grpc://127.0.0.1:{grpc}"
        except OSError:
            time.sleep(0.5)
    stop_daemon(proc)
    raise RuntimeError(f"the model server did not start; see {workdir / 'serve-models.log'}")


def bench_triton(bundle_dir: Path, family: str, footage: Path, stride: int, seconds: float, out: Path,
                 end_to_end) -> dict:
    """`end_to_end`: bench's runner of `dfwatch run` (bundle, footage, streams, seconds, stride,
    family, overrides) -> summary."""
    from engines.backends import DEFAULT_MAX_BATCH, open_runners, thread_count
    from daemon.benchmarks.triton_calls import call_overhead
    from engines.bundles.bundle import load_bundle

    out.mkdir(parents=True, exist_ok=True)  # the model server's log stays beside the results
    threads = thread_count(0)  # the served model computes with as many threads as the in-process one
    server, url = start_model_server(bundle_dir, out, threads)
    try:
        bundle = load_bundle(bundle_dir)
        local, _ = open_runners(bundle, "onnxruntime", "cpu")
        served, _ = open_runners(bundle, "triton", "cpu", triton=(url, 30.0))
        print("bench: triton, per-call cost ...", flush=True)
        calls = call_overhead(bundle, served, local, (1, DEFAULT_MAX_BATCH["cpu"]))
        triton = ("model.backend=triton", f"triton.url={url}")
        print("bench: triton, end to end: onnxruntime, triton, two processes on one server ...", flush=True)
        runs = {"onnxruntime, 1 process": [end_to_end(bundle_dir, footage, 1, seconds, stride, family)],
                "triton, 1 process": [end_to_end(bundle_dir, footage, 1, seconds, stride, family, triton)]}
        with ThreadPoolExecutor(2) as pool:
            both = [pool.submit(end_to_end, bundle_dir, footage, 1, seconds, stride, family, triton) for _ in range(2)]
            runs["triton, 2 processes"] = [f.result() for f in both]
    finally:
        stop_daemon(server)
    result = {"family": family, "bundle": bundle.id, "calls": calls, "end_to_end": runs, "seconds": seconds,
              "threads": threads}
    (out / "triton-results.json").write_text(json.dumps(result, indent=1))
    (out / "triton-results.md").write_text(triton_markdown(result))
    return result


def triton_markdown(r: dict) -> str:
    lines = [f"Triton against in-process ONNX Runtime ({r['family']}, bundle {r['bundle']}, {r['threads']} ONNX Runtime "
             "threads on both sides; `dfwatch bench --triton`):",
             "", "| part | batch | ONNX Runtime in process | through Triton | overhead | ratio |", "|---|---|---|---|---|---|"]
    for c in r["calls"]:
        lines.append(f"| {c['part']} | {c['batch']} | {c['onnxruntime_ms']:.1f} ms | {c['triton_ms']:.1f} ms | "
                     f"{c['overhead_ms']:+.1f} ms | {c['ratio']:.2f}x |")
    lines += ["", "| end to end (1 looped stream per process) | analysed frames/s per process | total | "
                  "verdict latency p50 |", "|---|---|---|---|"]
    base = None
    for name, runs in r["end_to_end"].items():
        if any("error" in run for run in runs):
            lines.append(f"| {name} | {'; '.join(run.get('error', '') for run in runs)} | | |")
            continue
        per = [run["analysed_fps_total"] for run in runs]
        total = sum(per)
        base = base or total
        p50 = max(run["latency_ms"]["p50"] for run in runs) / 1000
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in per)} | {total:.2f} ({total / base:.2f}x) | {p50:.1f} s |")
    return "\n".join(lines) + "\n"


def run_triton(args) -> int:
    """daemon/benchmarks/triton_server.py on --bundle or the demo bundle of --family (default: the default family)."""
    from daemon.benchmarks.common import bench_bundles
    from daemon.benchmarks.end_to_end import end_to_end
    from engines.cli import setup
    from engines.footage import footage as sample_footage
    from engines.families import DEFAULT_FAMILY

    config = setup(args, "bench")
    if args.family == "all" and not args.bundle:
        args.family = DEFAULT_FAMILY
    family, bundle_dir = next(iter(bench_bundles(args).items()))
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    result = bench_triton(bundle_dir, family, footage, config.window.stride, 20 if args.quick else 60,
                          Path(args.out), end_to_end)
    print(triton_markdown(result))
    return 0

