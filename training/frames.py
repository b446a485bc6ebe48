"""Cached face crops of one split, for the frame-level families (DLDFD, the ICPR 2020 detectors).

Each video contributes its sampled frames' face crops (the daemon's crops: same detector,
tracking, smoothing and crop) and the positions of its verdict window in them. Training uses
every crop with a face as one sample labelled with its video's label; evaluation runs the
window through `engines.pipeline.decision`, as the daemon does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.pipeline.preprocess import Normalization, normalize
from engines.families import CACHE_FACE_CROPS
from training.cache import cached_entries


@dataclass
class VideoCrops:
    key: str
    label: int             # 0 real, 1 fake
    group: str             # manipulation method for fakes (FF++ method, fake/<method>/), else the real source
    crops: np.ndarray      # (N, S, S, 3) uint8 RGB
    found: np.ndarray      # (N,) the crop is a detected face (else the centre-crop fallback)
    window: np.ndarray     # (T,) positions into `crops` of the video's verdict window
    spacing: float         # seconds between sampled frames


def load_video_crops(cache: str | Path, split: str) -> list[VideoCrops]:
    rows, _ = cached_entries(cache, split, CACHE_FACE_CROPS)
    return [VideoCrops(key=r["meta"]["key"], label=int(r["meta"]["label"]), group=r["meta"]["group"],
                       crops=r["crops"], found=r["found"].astype(bool), window=r["window"].astype(np.int64),
                       spacing=float(r["meta"].get("spacing_s", 0.0))) for r in rows]


def select(videos: list[VideoCrops], fake_groups: set[str] | None) -> list[VideoCrops]:
    """All real videos plus the fakes of `fake_groups` (None: every fake)."""
    return [v for v in videos if v.label == 0 or fake_groups is None or v.group in fake_groups]


def fake_groups(videos: list[VideoCrops]) -> list[str]:
    return sorted({v.group for v in videos if v.label == 1})


class FaceFrames(torch.utils.data.Dataset):
    """One sample per face crop: (normalised image (3, S, S), label), randomly flipped
    horizontally when `flip` (the paper's augmentation)."""

    def __init__(self, videos: list[VideoCrops], norm: Normalization, flip: bool = False, seed: int = 0):
        self.items = [(v.crops[i], v.label) for v in videos for i in np.flatnonzero(v.found)]
        self.norm, self.flip = norm, flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.items], np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        crop, label = self.items[index]
        if self.flip and self.rng.random() < 0.5:
            crop = crop[:, ::-1]
        x = normalize(np.ascontiguousarray(crop)[None], self.norm)[0]
        return torch.from_numpy(x), torch.tensor(float(label))
