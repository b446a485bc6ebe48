"""Timing and FLOP counting shared by the CPU and GPU benchmarks."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds per call (host work: a CPU model, a detector with host steps)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cuda_timed(fn, min_seconds: float = 0.3, max_repeats: int = 50, warmup: int = 3) -> float:
    """Median seconds per call of GPU work, timed with CUDA events around each call after warm-up;
    repeats until about `min_seconds` were measured (at least 3 calls)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_seconds and len(times) < max_repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def flops_of(module, *inputs) -> int:
    """FLOPs of one forward pass (torch.utils.flop_counter: 2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*[torch.as_tensor(x) for x in inputs])
    return counter.get_total_flops()
