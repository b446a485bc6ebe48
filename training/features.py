"""Cached features of one split, as arrays the head trains and is evaluated on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.families import CACHE_WINDOW_INPUTS
from training.cache import cached_entries


@dataclass
class Features:
    style: np.ndarray      # (N, T, levels, 512)
    content: np.ndarray    # (N, clips, 2048)
    labels: np.ndarray     # (N,) 0 real / 1 fake
    keys: list[str]
    spacing: np.ndarray    # (N,) seconds between sampled frames
    invalid: int           # entries of this split recorded as invalid

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = np.asarray(index) if not isinstance(index, slice) else index
        return (torch.from_numpy(self.style[index]), torch.from_numpy(self.content[index]),
                torch.from_numpy(self.labels[index].astype(np.float32)))

    def median_spacing(self) -> float:
        s = self.spacing[self.spacing > 0]
        return float(np.median(s)) if len(s) else 0.0


def load_features(cache: str | Path, split: str) -> Features:
    rows, invalid = cached_entries(cache, split, CACHE_WINDOW_INPUTS)
    return Features(style=np.stack([r["style"] for r in rows]).astype(np.float32),
                    content=np.stack([r["content"] for r in rows]).astype(np.float32),
                    labels=np.array([r["meta"]["label"] for r in rows], np.int64),
                    keys=[r["meta"]["key"] for r in rows],
                    spacing=np.array([r["meta"].get("spacing_s", 0.0) for r in rows], np.float64), invalid=invalid)
