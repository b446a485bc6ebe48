"""The runner interface every backend implements, and thread settings they share.

`runner.run(*inputs) -> np.ndarray` takes numpy arrays or torch tensors (float32, batch first,
in the order of the part's `inputs` in its family) and returns float32 numpy.
"""
from __future__ import annotations

import os

import numpy as np

from engines.pipeline.specs import Normalization


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count(requested: int) -> int:
    """0 -> one per core; never more than the cores (oversubscription is 3-5x slower)."""
    n = cores()
    return n if requested <= 0 else min(requested, n)


def as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (this module does not import torch)
        return x.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.ascontiguousarray(x, dtype=np.float32)


class Runner:
    part: str
    backend: str
    pixels: Normalization | None = None  # set: run_pixels takes 8-bit crops and normalises on the device

    def run(self, *inputs) -> np.ndarray:
        raise NotImplementedError
