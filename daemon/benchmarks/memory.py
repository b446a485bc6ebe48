"""Where the inference process's memory goes: ONNX Runtime's arena with and without memory
patterns, each in a fresh process (an arena, once grown, never gives memory back), fed every
batch size 1..max_batch in a random order as the daemon's batching does, then timed per face.
`dfwatch bench --memory` runs it and reports the two side by side (docs/BENCHMARKS.md)."""
from __future__ import annotations

import json
import subprocess
import sys


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def measure_one(bundle_dir: str, part: str, patterns: bool, max_batch: int, threads: int, calls: int = 120) -> dict:
    """In this process: RSS after `calls` batches of random sizes, then ms per item at batch 1, 4, max."""
    import time

    import numpy as np

    from engines.backends.onnx_runner import OnnxRunner
    from engines.bundles.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    runner = OnnxRunner(part, bundle.onnx_path(part), threads, providers=["CPUExecutionProvider"],
                        memory_patterns=patterns)
    shapes = bundle.input_shapes(part)
    rng = np.random.default_rng(0)

    def batch(n: int):
        return [rng.random((n, *shape), dtype=np.float32) for shape in shapes.values()]
    loaded = rss_mb()
    for _ in range(calls):
        runner.run(*batch(int(rng.integers(1, max_batch + 1))))
    grown = rss_mb()
    sizes = sorted({1, min(4, max_batch), max_batch})
    inputs = {n: batch(n) for n in sizes}
    start = time.perf_counter()
    for _ in range(5):
        for n in sizes:
            runner.run(*inputs[n])
    per_item = (time.perf_counter() - start) / (5 * sum(sizes))
    return {"patterns": patterns, "rss_loaded_mb": round(loaded), "rss_after_mb": round(grown),
            "ms_per_item": round(per_item * 1000, 2)}


def onnx_memory(bundle_dir: str, part: str, max_batch: int, threads: int) -> list[dict]:
    """Both settings, twice each, alternating (a noisy machine moves both alike), each in its own process."""
    rows = []
    for patterns in (True, False, True, False):
        code = ("import json, sys; from daemon.benchmarks.memory import measure_one; "
                f"print(json.dumps(measure_one({bundle_dir!r}, {part!r}, {patterns}, {max_batch}, {threads})))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return rows


def markdown(part: str, family: str, max_batch: int, rows: list[dict]) -> str:
    lines = [f"ONNX Runtime memory, {family} part '{part}' (batches of 1..{max_batch}, each size seen):", "",
             "| memory patterns | RSS loaded | RSS after 120 batches | ms per face |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'on' if r['patterns'] else 'off (dfwatch)'} | {r['rss_loaded_mb']} MB | "
                     f"{r['rss_after_mb']} MB | {r['ms_per_item']} |")
    on = [r for r in rows if r["patterns"]]
    off = [r for r in rows if not r["patterns"]]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    lines += ["", f"Off against on, same run: RSS {mean(off, 'rss_after_mb') / mean(on, 'rss_after_mb'):.2f}x, "
                  f"time per face {mean(off, 'ms_per_item') / mean(on, 'ms_per_item'):.2f}x."]
    return "\n".join(lines) + "\n"


def run_memory(args) -> int:
    from pathlib import Path

    from daemon.benchmarks.common import bench_bundles
    from engines.cli import setup
    from engines.backends import DEFAULT_MAX_BATCH, thread_count
    from engines.bundles.bundle import load_bundle

    config = setup(args, "bench")
    threads = thread_count(config.model.threads)
    max_batch = config.inference.max_batch or DEFAULT_MAX_BATCH["cpu"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, text = {}, []
    for family, bundle_dir in bench_bundles(args).items():
        part = load_bundle(bundle_dir).frame_part
        print(f"bench: memory of {family} '{part}' ...", flush=True)
        results[family] = onnx_memory(str(bundle_dir), part, max_batch, threads)
        text.append(markdown(part, family, max_batch, results[family]))
    (out / "memory-results.json").write_text(json.dumps(results, indent=2))
    (out / "memory-results.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0

