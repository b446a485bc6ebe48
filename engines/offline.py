"""Scoring a sequence of frames synchronously, with exactly the daemon's per-stream logic.

Used where there is no daemon — training evaluation, checks that a served verdict equals the
offline score of the same frames — and as the reference the daemon's batching must not change.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engines.analysis import StreamAnalysis, WindowInputs, WindowSpec
from engines.bundle import Bundle
from engines.preprocess import FaceDetector


@dataclass
class WindowScore:
    inputs: WindowInputs
    score: float | None   # None when too few frames had a face


def stream_analysis(bundle: Bundle, stride: int, min_face_fraction: float, crop=None) -> StreamAnalysis:
    """The per-stream state for a bundle: window length, clips, crop and normalisation from its manifest."""
    spec = WindowSpec(bundle.frames, stride, bundle.clip_frames, min_face_fraction)
    return StreamAnalysis(spec, crop or bundle.crop, bundle.style_norm, bundle.content_norm)


def score_window(head_runner, inputs: WindowInputs) -> float | None:
    if not inputs.enough_faces:
        return None
    return float(head_runner.run(inputs.style[None], inputs.content[None])[0])


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def ready_windows(analysis: StreamAnalysis, runners: dict, detector: FaceDetector, batch: int = 1,
                  on_crop=None) -> list[WindowInputs]:
    """Runs every pending detection, style and content call of one stream (in batches of
    `batch`) and returns the windows that became ready, marking them done. `on_crop(record)`
    sees each face crop before it is encoded (e.g. to keep calibration images)."""
    pending = analysis.needs_detection()
    if pending:
        for record, faces in zip(pending, detector.detect([r.pixels for r in pending])):
            analysis.set_detections(record, faces)
    for chunk in _chunks(analysis.needs_style(), batch):
        if on_crop:
            for record in chunk:
                on_crop(record)
        codes = runners["style"].run(np.stack([analysis.style_input(r) for r in chunk]))
        for record, code in zip(chunk, codes):
            analysis.set_style(record, code)
    for chunk in _chunks(analysis.needs_content(), batch):
        feats = runners["content"].run(np.stack([analysis.clip_input(k) for k in chunk]))
        for key, f in zip(chunk, feats):
            analysis.set_content(key, f)
    windows = analysis.ready_windows()
    for w in windows:
        analysis.window_done(w)
    return windows


def drain(analysis: StreamAnalysis, runners: dict, detector: FaceDetector) -> list[WindowScore]:
    """Runs every pending model call of one stream, one item at a time, and scores due windows."""
    return [WindowScore(w, score_window(runners["head"], w)) for w in ready_windows(analysis, runners, detector)]


def score_frames(frames: Iterable[tuple[np.ndarray, int, float, float]], bundle: Bundle, runners: dict,
                 detector: FaceDetector, stride: int = 8, min_face_fraction: float = 0.5,
                 end: bool = True) -> list[WindowScore]:
    """Scores (pixels, seq, t_capture, t_mono) frames in order; `end` closes the stream."""
    analysis = stream_analysis(bundle, stride, min_face_fraction)
    scores = []
    for pixels, seq, t_capture, t_mono in frames:
        analysis.add_frame(pixels, seq, t_capture, t_mono)
        scores += drain(analysis, runners, detector)
    if end:
        analysis.end()
        scores += drain(analysis, runners, detector)
    return scores
