"""The training cache: what `dfwatch train extract` writes and fitting and evaluation read.

One npz file per video, `<cache>/<real|fake>/<name>-<hash>.npz`, holding `meta` (a JSON string:
source, key, label, split, group, validity, provenance) and, for a valid entry, the arrays of its
kind — which the bundle's family declares (`Family.training_cache`):

  window-inputs  the trained part's inputs for the video's one window, made by the frozen parts:
                 style (T, levels, 512), content (clips, 2048), found (T,), frame_indices, times
  face-crops     every sampled frame's face crop, for a per-frame model that is itself trained:
                 crops (N, S, S, 3) uint8, found (N,), window (T,) positions into crops,
                 frame_indices, times

`found` is the face-found mask of whichever frames the entry holds. An entry is reused only if
it was made by the same cache schema and the same models (`meta.models`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from engines.errors import DfwatchError
from engines.families import CACHE_FACE_CROPS, CACHE_WINDOW_INPUTS

SCHEMA = 2  # 2: `found` for both kinds (was face_found / crop_found), `kind` in meta
ARRAYS = {CACHE_WINDOW_INPUTS: ("style", "content", "found", "frame_indices", "times"),
          CACHE_FACE_CROPS: ("crops", "found", "window", "frame_indices", "times")}
COMPRESSED = {CACHE_WINDOW_INPUTS: False, CACHE_FACE_CROPS: True}  # crops compress 3-5x; features hardly


class CacheError(DfwatchError):
    pass


def cache_path(cache: Path, video) -> Path:
    """Where a video's entry lives (`video`: a training.datasets.Video)."""
    digest = hashlib.sha1(video.key.encode()).hexdigest()[:10]
    return Path(cache) / video.label_name / f"{Path(video.key).stem}-{digest}.npz"


def read_entry(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        entry = {k: z[k] for k in z.files}
    entry["meta"] = json.loads(str(entry["meta"]))
    return entry


def write_entry(path: Path, meta: dict, kind: str | None = None, **arrays) -> None:
    """Writes one video's entry atomically (an interrupted run never leaves half a file); an
    invalid entry (`kind` None) holds only its meta."""
    if kind is not None and set(arrays) != set(ARRAYS[kind]):
        raise ValueError(f"a {kind} cache entry holds {ARRAYS[kind]}, not {tuple(arrays)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    save = np.savez_compressed if kind and COMPRESSED[kind] else np.savez
    save(tmp, meta=np.array(json.dumps({**meta, "schema": SCHEMA, "kind": kind})), **arrays)
    os.replace(tmp, path)


def up_to_date(path: Path, models: dict) -> bool:
    """A valid or invalid entry made by this schema with these models: extraction skips it."""
    if not path.is_file():
        return False
    try:
        meta = read_entry(path)["meta"]
    except Exception:  # unreadable entry: redo it
        return False
    return meta.get("schema") == SCHEMA and meta.get("models") == models


def entry_paths(cache: str | Path) -> list[Path]:
    cache = Path(cache)
    if not (cache / "real").is_dir() and not (cache / "fake").is_dir():
        raise CacheError(f"{cache}: no feature cache here (expected real/ and fake/); run 'dfwatch train extract'")
    return sorted((cache / "real").glob("*.npz")) + sorted((cache / "fake").glob("*.npz"))


def cached_entries(cache: str | Path, split: str, kind: str) -> tuple[list[dict], int]:
    """The valid entries of one split (and how many were recorded invalid), after checking that
    they were all extracted the same way, as this kind."""
    rows, invalid, models = [], 0, set()
    for path in entry_paths(cache):
        entry = read_entry(path)
        meta = entry["meta"]
        if meta["split"] != split:
            continue
        if not meta["valid"]:
            invalid += 1
            continue
        _check_schema(cache, meta)
        if meta["kind"] != kind:
            raise CacheError(f"{cache}: holds {meta['kind']} (extracted with a {meta['family']} bundle), but this "
                             f"step needs {kind}; extract with a matching bundle into another cache")
        models.add(json.dumps(meta["models"], sort_keys=True))
        rows.append(entry)
    if len(models) > 1:
        raise CacheError(f"{cache}: entries were extracted with different models; re-run extract into a fresh cache")
    if not rows:
        raise CacheError(f"{cache}: no valid cached videos for split '{split}' ({invalid} invalid); "
                         "extract that split first")
    return rows, invalid


def cache_kind(cache: str | Path) -> str:
    """What a cache holds (from its first valid entry): CACHE_WINDOW_INPUTS or CACHE_FACE_CROPS."""
    return _first_valid(cache)["kind"]


def cache_family(cache: str | Path) -> str:
    """The model family whose bundle extracted the cache (from its first valid entry)."""
    return _first_valid(cache)["family"]


def _first_valid(cache: str | Path) -> dict:
    for path in entry_paths(cache):
        meta = read_entry(path)["meta"]
        if meta["valid"]:
            _check_schema(cache, meta)
            return meta
    raise CacheError(f"{cache}: no valid cached video here; run 'dfwatch train extract' first")


def _check_schema(cache, meta: dict) -> None:
    if meta.get("schema") != SCHEMA:
        raise CacheError(f"{cache}: extracted by an older dfwatch (cache schema {meta.get('schema', 1)}, this one "
                         f"reads {SCHEMA}); run 'dfwatch train extract' again with the same --cache to update it")
