"""Scoring a sequence of frames synchronously, with exactly the daemon's per-stream logic.

Used where there is no daemon — training evaluation, checks that a served verdict equals the
offline score of the same frames — and as the reference the daemon's batching must not change.
It sits above the pipeline (which never imports a family or a bundle) because it binds the two:
a bundle's family decides on the pipeline's window inputs.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engines.bundles.bundle import Bundle
from engines.families import Family
from engines.pipeline.analysis import StreamAnalysis, WindowInputs, WindowSpec
from engines.pipeline.decision import Decision
from engines.pipeline.preprocess import FaceDetector


@dataclass
class WindowScore:
    inputs: WindowInputs
    decision: Decision

    @property
    def score(self) -> float | None:
        """P(fake) of the window (dldfd: the mean of its face frames); None when too few faces."""
        return self.decision.score


def stream_analysis(bundle: Bundle, stride: int, min_face_fraction: float, crop=None,
                    frames: int | None = None) -> StreamAnalysis:
    """The per-stream state for a bundle: window length, clips, crop and normalisation from its
    manifest (`frames` overrides the window length, as training extraction does)."""
    spec = WindowSpec(frames or bundle.frames, stride, bundle.clip_frames, min_face_fraction)
    return StreamAnalysis(spec, crop or bundle.crop, bundle.frame_norm, bundle.content_norm)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def detect_pending(analysis: StreamAnalysis, detector: FaceDetector) -> None:
    """Face-detects every frame that waits for it (which makes the crops whose smoothing is complete)."""
    pending = analysis.needs_detection()
    if pending:
        for record, faces in zip(pending, detector.detect([r.pixels for r in pending])):
            analysis.set_detections(record, faces)


def run_pending(analysis: StreamAnalysis, runners: dict, detector: FaceDetector, family: Family,
                batch: int = 1, on_crop=None) -> list[WindowInputs]:
    """Runs every pending detection, per-frame and content call of one stream (in batches of
    `batch`) and returns the windows that became ready, marking them done. `on_crop(record)`
    sees each face crop before it is encoded (e.g. to keep calibration images)."""
    detect_pending(analysis, detector)
    for chunk in _chunks(analysis.needs_encoding(), batch):
        if on_crop:
            for record in chunk:
                on_crop(record)
        outputs = runners[family.frame_part].run(np.stack([analysis.encoder_input(r) for r in chunk]))
        for record, output in zip(chunk, outputs):
            analysis.set_encoding(record, output)
    for chunk in _chunks(analysis.needs_content(), batch):
        feats = runners[family.content_part].run(np.stack([analysis.clip_input(k) for k in chunk]))
        for key, f in zip(chunk, feats):
            analysis.set_content(key, f)
    windows = analysis.ready_windows()
    for w in windows:
        analysis.window_done(w)
    return windows


def drain(analysis: StreamAnalysis, bundle: Bundle, runners: dict, detector: FaceDetector,
          threshold: float | None = None) -> list[WindowScore]:
    """Runs every pending model call of one stream, one item at a time, and decides due windows."""
    windows = run_pending(analysis, runners, detector, bundle.spec)
    threshold = bundle.threshold if threshold is None else threshold
    return [WindowScore(w, d) for w, d in zip(windows, bundle.spec.decide(windows, runners, threshold))]


def score_frames(frames: Iterable[tuple[np.ndarray, int, float, float]], bundle: Bundle, runners: dict,
                 detector: FaceDetector, stride: int = 8, min_face_fraction: float = 0.5,
                 end: bool = True) -> list[WindowScore]:
    """Scores (pixels, seq, t_capture, t_mono) frames in order; `end` closes the stream."""
    analysis = stream_analysis(bundle, stride, min_face_fraction)
    scores = []
    for pixels, seq, t_capture, t_mono in frames:
        analysis.add_frame(pixels, seq, t_capture, t_mono)
        scores += drain(analysis, bundle, runners, detector)
    if end:
        analysis.end()
        scores += drain(analysis, bundle, runners, detector)
    return scores
