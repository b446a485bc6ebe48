"""What serving a part through Triton costs per call, against in-process ONNX Runtime, in one run.

Both runners compute the same ONNX file on the same inputs; the difference is the Triton path:
serialisation, gRPC over loopback, the dynamic batcher's queue, the Python backend's shared
memory. Medians of `repeats` calls after a warm-up, batch by batch.
"""
from __future__ import annotations

import statistics
import time

import numpy as np


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: sessions, connections, allocator pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def call_overhead(bundle, triton_runners: dict, local_runners: dict, batches: tuple[int, ...],
                  repeats: int = 20) -> list[dict]:
    """Per part and batch: ONNX Runtime in process vs Triton, ms per call and their difference."""
    rows = []
    rng = np.random.default_rng(0)
    for part in bundle.spec.parts:
        shapes = bundle.input_shapes(part.name)
        for batch in batches:
            inputs = [rng.standard_normal((batch, *shapes[name]), dtype=np.float32) for name in part.inputs]
            local = median_ms(lambda: local_runners[part.name].run(*inputs), repeats)
            served = median_ms(lambda: triton_runners[part.name].run(*inputs), repeats)
            rows.append({"part": part.name, "batch": batch, "onnxruntime_ms": local, "triton_ms": served,
                         "overhead_ms": served - local, "ratio": served / local})
    return rows
