"""`dfwatch train extract`: sample T frames per video, run the shared face pipeline and cache
what training needs — one file per video, of the kind the bundle's family declares
(training/cache.py): the trained part's inputs, made here once by the frozen parts (StyleGRU:
style codes and content features), or, for a family whose per-frame model is what trains
(DLDFD), the face crops themselves.

Frames are sampled uniformly over the whole video (the StyleGRU paper's sampling); a video shorter than T is
padded circularly by the same `StreamAnalysis` code the daemon uses at the end of a stream, so a
cached window is exactly what the daemon computes for those frames. Cache files
(`<cache>/<real|fake>/<name>-<hash>.npz`) carry a validity flag and provenance (source path,
frame indices, face-found mask, model checksums). Extraction is resumable (valid entries made
with the same models are skipped) and a video that cannot be read is recorded as invalid, never
fatal. The next video is decoded in a thread while the models work on the current one.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engines.families import CACHE_FACE_CROPS
from engines.logs import get_logger
from training.cache import cache_path, up_to_date, write_entry
from training.datasets import Video

log = get_logger()


@dataclass
class Sampled:
    frames: list[np.ndarray]
    indices: list[int]
    times: list[float]     # seconds into the video
    error: str = ""


def sample_indices(n_frames: int, t: int) -> list[int]:
    """T indices uniformly over [0, n); all n frames when the video is shorter (padded later)."""
    if n_frames <= 0:
        return []
    if n_frames < t:
        return list(range(n_frames))
    return [int(round(x)) for x in np.linspace(0, n_frames - 1, t)]


def _frame_count(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        return -1, 0.0
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS) or 25.0
    if n <= 0:  # no reliable count in the container: count by decoding
        n = 0
        while cap.grab():
            n += 1
    cap.release()
    return n, fps


def read_sampled(path: Path, t: int) -> Sampled:
    """Decodes the sampled frames (sequentially: seeking is not frame-exact in every codec)."""
    n, fps = _frame_count(path)
    if n < 0:
        return Sampled([], [], [], "cannot open: not a video OpenCV/FFmpeg can decode")
    wanted = sample_indices(n, t)
    if not wanted:
        return Sampled([], [], [], "no frames")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames, got = [], []
    todo = set(wanted)
    index = 0
    while todo and cap.grab():
        if index in todo:
            ok, frame = cap.retrieve()
            if ok:
                frames.append(frame)
                got.append(index)
            todo.discard(index)
        index += 1
    cap.release()
    if not frames:
        return Sampled([], [], [], f"decoded no frame (container says {n}): corrupt or truncated")
    if todo:  # truncated: the container promised more frames than it holds
        log.warning("video shorter than its header says; using the frames it has", video=str(path),
                    wanted=len(wanted), decoded=len(frames))
    return Sampled(frames, got, [i / fps for i in got])


def extraction_models(bundle) -> dict:
    """What a cache entry depends on: for window inputs, the checksums of the parts that make them;
    for face crops (the per-frame model is what trains), only how faces are cropped."""
    family = bundle.spec
    if family.training_cache == CACHE_FACE_CROPS:
        return {"family": family.name, "crop": bundle.crop.to_dict()}
    return {p.name: bundle.manifest.files[p.name].sha256 for p in family.parts if p.name != family.trained_part}


def progress(items: list, desc: str, unit: str, interval: float = 10.0):
    """A tqdm bar on a terminal; elsewhere (journald, CI, a pipe) a `progress` log line every
    `interval` seconds and one at the end, never carriage returns in the log stream."""
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, unit=unit, dynamic_ncols=True)
        return
    last = time.monotonic()
    for done, item in enumerate(items):
        if time.monotonic() - last >= interval:
            log.info("progress", stage=desc, done=done, total=len(items), unit=unit)
            last = time.monotonic()
        yield item
    log.info("progress", stage=desc, done=len(items), total=len(items), unit=unit)


def extract(videos: list[Video], cache: Path, bundle, runners: dict, detector, frames: int,
            stride_analysis, batch: int = 8, crops_dir: Path | None = None) -> dict:
    """Extracts every video not already cached with the same models. Returns counts."""
    models = extraction_models(bundle)
    todo = [v for v in videos if not up_to_date(cache_path(cache, v), models)]
    counts = {"videos": len(videos), "skipped": len(videos) - len(todo), "extracted": 0, "invalid": 0}
    if not todo:
        return counts
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(read_sampled, todo[0].path, frames)
        for i, video in enumerate(progress(todo, "extract", "video")):
            sampled = future.result()
            if i + 1 < len(todo):
                future = pool.submit(read_sampled, todo[i + 1].path, frames)  # decode ahead
            ok = _extract_one(video, sampled, cache, models, bundle, runners, detector, stride_analysis, batch,
                              crops_dir)
            counts["extracted" if ok else "invalid"] += 1
    return counts


def _extract_one(video: Video, sampled: Sampled, cache: Path, models: dict, bundle, runners, detector,
                 stride_analysis, batch: int, crops_dir: Path | None) -> bool:
    meta = {"source": str(video.path), "key": video.key, "label": video.label, "split": video.split,
            "group": video.group, "models": models, "bundle": bundle.id, "family": bundle.family}
    kind = bundle.spec.training_cache
    path = cache_path(cache, video)
    if sampled.error:
        log.warning("invalid video recorded", video=str(video.path), error=sampled.error)
        write_entry(path, {**meta, "valid": False, "error": sampled.error})
        return False
    analysis = stride_analysis()
    for frame, index, t in zip(sampled.frames, sampled.indices, sampled.times):
        analysis.add_frame(frame, index, t, t)
    analysis.end()
    try:
        on_crop = _crop_saver(crops_dir, path.stem) if crops_dir else None
        if kind == CACHE_FACE_CROPS:
            meta, arrays = _face_crops(analysis, sampled, detector, meta, on_crop)
        else:
            meta, arrays = _encodings(analysis, sampled, runners, detector, bundle.spec, batch, on_crop, meta)
    except Exception as e:  # a model failure on one video must not end the run
        log.exception("extraction failed; video recorded as invalid", video=str(video.path))
        write_entry(path, {**meta, "valid": False, "error": f"{type(e).__name__}: {e}"})
        return False
    write_entry(path, {**meta, "valid": True, "error": ""}, kind, **arrays)
    return True


def _spacing(times: list[float]) -> float:
    return float(np.median(np.diff(sorted(set(times))))) if len(set(times)) > 1 else 0.0


def _encodings(analysis, sampled: Sampled, runners, detector, family, batch: int, on_crop,
               meta: dict) -> tuple[dict, dict]:
    """Window inputs: the trained part's inputs for the video's one window (e.g. style codes and
    content features), made by the frozen parts."""
    from engines.scoring import run_pending

    (window,) = run_pending(analysis, runners, detector, family, batch, on_crop)
    indices = [sampled.indices[i] for i in window.indices]
    times = [sampled.times[i] for i in window.indices]
    meta = {**meta, "frames": len(window.indices), "spacing_s": _spacing(times), "faces": int(window.faces)}
    return meta, {"style": window.encodings, "content": window.content, "found": window.found,
                  "frame_indices": np.array(indices), "times": np.array(times)}


def _face_crops(analysis, sampled: Sampled, detector, meta: dict, on_crop=None) -> tuple[dict, dict]:
    """Face crops: every sampled frame's face crop (uint8 RGB, the daemon's crop) and the window's
    positions in them (a short video's window repeats frames, exactly as the daemon pads it)."""
    from engines.pipeline.analysis import SINGLE_TRACK
    from engines.scoring import detect_pending

    detect_pending(analysis, detector)
    (window,) = analysis.due_windows()
    track = analysis.tracks[SINGLE_TRACK]  # training follows one face per video, as datasets label videos
    records = [track.frames[i] for i in range(track.count)]
    for record in records if on_crop else ():
        on_crop(record)
    found = np.array([r.found for r in records])
    meta = {**meta, "frames": len(window), "spacing_s": _spacing(sampled.times), "faces": int(found.sum())}
    return meta, {"crops": np.stack([r.crop for r in records]), "found": found, "window": np.array(window),
                  "frame_indices": np.array(sampled.indices), "times": np.array(sampled.times)}


def _crop_saver(folder: Path, stem: str, per_video: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    saved = []

    def save(record) -> None:
        if len(saved) < per_video and record.found:
            cv2.imwrite(str(folder / f"{stem}-{record.index:04d}.jpg"), cv2.cvtColor(record.crop, cv2.COLOR_RGB2BGR))
            saved.append(record.index)
    return save
