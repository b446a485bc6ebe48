"""Cached features of one split, as arrays the head trains and is evaluated on."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.errors import DfwatchError
from training.extract import read_entry


class FeaturesError(DfwatchError):
    pass


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


def entry_paths(cache: str | Path) -> list[Path]:
    cache = Path(cache)
    if not (cache / "real").is_dir() and not (cache / "fake").is_dir():
        raise FeaturesError(f"{cache}: no feature cache here (expected real/ and fake/); run 'dfwatch train extract'")
    return sorted((cache / "real").glob("*.npz")) + sorted((cache / "fake").glob("*.npz"))


def cached_entries(cache: str | Path, split: str, family: str) -> tuple[list[dict], int]:
    """The valid cache entries of one split (and how many were recorded invalid), after checking
    that they were all extracted the same way, for this model family."""
    rows, invalid, models = [], 0, set()
    for path in entry_paths(cache):
        entry = read_entry(path)
        meta = entry["meta"]
        if meta["split"] != split:
            continue
        if not meta["valid"]:
            invalid += 1
            continue
        found = meta.get("family", "stylegru")
        if found != family:
            raise FeaturesError(f"{cache}: extracted with a {found} bundle, but this step trains or evaluates "
                                f"{family}; extract with a {family} bundle into another cache")
        models.add(json.dumps(meta["models"], sort_keys=True))
        rows.append(entry)
    if len(models) > 1:
        raise FeaturesError(f"{cache}: entries were extracted with different models; re-run extract into a fresh cache")
    if not rows:
        raise FeaturesError(f"{cache}: no valid cached videos for split '{split}' ({invalid} invalid); "
                            "extract that split first")
    return rows, invalid


def cache_family(cache: str | Path) -> str:
    """The model family a cache was extracted for (from its first valid entry)."""
    for path in entry_paths(cache):
        meta = read_entry(path)["meta"]
        if meta["valid"]:
            return meta.get("family", "stylegru")
    raise FeaturesError(f"{cache}: no valid cached video here; run 'dfwatch train extract' first")


def load_features(cache: str | Path, split: str) -> Features:
    rows, invalid = cached_entries(cache, split, "stylegru")
    return Features(style=np.stack([r["style"] for r in rows]).astype(np.float32),
                    content=np.stack([r["content"] for r in rows]).astype(np.float32),
                    labels=np.array([r["meta"]["label"] for r in rows], np.int64),
                    keys=[r["meta"]["key"] for r in rows],
                    spacing=np.array([r["meta"].get("spacing_s", 0.0) for r in rows], np.float64), invalid=invalid)
