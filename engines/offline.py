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


def drain(analysis: StreamAnalysis, runners: dict, detector: FaceDetector) -> list[WindowScore]:
    """Runs every pending model call of one stream, one item at a time, and scores due windows."""
    scores = []
    for record in analysis.needs_detection():
        analysis.set_detections(record, detector.detect([record.pixels])[0])
    for record in analysis.needs_style():
        analysis.set_style(record, runners["style"].run(analysis.style_input(record)[None])[0])
    for key in analysis.needs_content():
        analysis.set_content(key, runners["content"].run(analysis.clip_input(key)[None])[0])
    for inputs in analysis.ready_windows():
        scores.append(WindowScore(inputs, score_window(runners["head"], inputs)))
        analysis.window_done(inputs)
    return scores


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
