"""Deterministic stand-in weights in the official file layouts, for `dfwatch demo` and tests.

The project ships no weights but MesoNet's and a fresh machine has none, yet the demo must run the real
loaders on real-format files. Each tensor is drawn from a generator seeded by (seed, key), with
fan-in scaling and BatchNorm statistics that keep activations O(1) — the same value rules as
../shared/parity/make_checkpoint.py documents. These weights detect nothing.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from engines.models.dldfd import resnet50_trunk
from engines.models.psp import N_STYLES, STYLE_DIM, GradualStyleEncoder
from engines.models.r3d import SlowR50

DEMO_OPTS = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "output_size": 1024,
             "start_from_latent_avg": True, "learn_in_w": False, "note": "dfwatch demo weights, untrained"}


def _value(key: str, shape: tuple, seed: int, keys: set) -> torch.Tensor:
    module, _, leaf = key.rpartition(".")
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.long)
    n = np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal(shape)
    is_bn = f"{module}.running_mean" in keys
    if leaf == "running_mean":
        v = 0.1 * n
    elif leaf == "running_var":
        v = 1 + 0.1 * np.abs(n)
    elif key == "latent_avg" or (leaf == "weight" and module.endswith(".linear") and ".styles." in f".{key}"):
        v = n  # EqualLinear scales by 1/sqrt(in) itself
    elif len(shape) >= 2:
        v = n / math.sqrt(math.prod(shape[1:]))
    elif leaf == "weight" and is_bn:
        v = 1 + 0.1 * n
    elif leaf == "bias":
        v = (0.1 if is_bn else 0.01) * n
    else:  # PReLU slopes
        v = 0.25 + 0.01 * n
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))


def seeded_state_dict(module: torch.nn.Module, seed: int, prefix: str = "") -> dict:
    shapes = {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}
    return {k: _value(k, s, seed, set(shapes)) for k, s in shapes.items()}


def psp_checkpoint(seed: int) -> dict:
    """`psp_ffhq_encode.pt` layout (encoder keys only: the detector never loads the decoder)."""
    with torch.device("meta"):
        encoder = GradualStyleEncoder(range(N_STYLES))
    return {"state_dict": seeded_state_dict(encoder, seed, prefix="encoder."), "opts": dict(DEMO_OPTS),
            "latent_avg": _value("latent_avg", (N_STYLES, STYLE_DIM), seed, set())}


def resnet50_imagenet_checkpoint(seed: int) -> dict:
    """torchvision `resnet50-*.pth` layout: a plain state dict, 1000-class classifier included."""
    with torch.device("meta"):
        trunk = resnet50_trunk()
    shapes = {**{k: tuple(v.shape) for k, v in trunk.state_dict().items()},
              "fc.weight": (1000, 2048), "fc.bias": (1000,)}
    return {k: _value(k, s, seed, set(shapes)) for k, s in shapes.items()}


def slow_r50_checkpoint(seed: int) -> dict:
    """`SLOW_8x8_R50.pyth` layout."""
    with torch.device("meta"):
        model = SlowR50()
    return {"model_state": seeded_state_dict(model, seed)}
