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
from engines.pipeline.scheduler import Scheduler
from engines.pipeline.tracking import TrackingSpec
from engines.pipeline.work import WorkQueues


@dataclass
class WindowScore:
    inputs: WindowInputs
    decision: Decision

    @property
    def score(self) -> float | None:
        """P(fake) of the window (dldfd: the mean of its face frames); None when too few faces."""
        return self.decision.score


def stream_analysis(bundle: Bundle, stride: int, min_face_fraction: float, crop=None,
                    frames: int | None = None, tracking: TrackingSpec | None = None,
                    work: WorkQueues | None = None, name: str = "", first_track: int = 1,
                    fps: float | None = None) -> StreamAnalysis:
    """The per-stream state for a bundle: window length, clips, crop and normalisation from its
    manifest (`frames` overrides the window length, as training extraction does). `tracking`
    None follows one face as the bundle's crop chooses it (training's way); the daemon and scan
    pass the `faces` configuration's. `fps`: the analysis rate (the bundle's unless `capture.fps` says)."""
    spec = WindowSpec(frames or bundle.frames, stride, bundle.clip_frames, min_face_fraction)
    return StreamAnalysis(spec, crop or bundle.crop, bundle.frame_norm, bundle.content_norm, tracking=tracking,
                          work=work, name=name, first_track=first_track, fps=fps or bundle.fps)


def scheduler(bundle: Bundle, runners: dict, detector: FaceDetector, threshold: float | None = None,
              work: WorkQueues | None = None, on_crop=None) -> Scheduler:
    """The scheduler of a bundle's model work: its family's parts and decision at `threshold`
    (the bundle's by default)."""
    threshold = bundle.threshold if threshold is None else threshold
    family = bundle.spec
    return Scheduler(detector, runners, family.frame_part, family.content_part,
                     lambda windows: family.decide(windows, runners, threshold), work=work, on_crop=on_crop)


def detect_pending(analysis: StreamAnalysis, detector: FaceDetector) -> None:
    """Face-detects every frame that waits for it (which makes the crops whose smoothing is complete)."""
    items = analysis.work.take("detect")
    if items:
        Scheduler(detector, {}, "", None, lambda w: []).detect(items)


def run_pending(analysis: StreamAnalysis, runners: dict, detector: FaceDetector, family: Family,
                batch: int = 1, on_crop=None) -> list[WindowInputs]:
    """Runs every pending detection, per-frame and content call of one stream (in batches of
    `batch`) and returns the windows that became ready, marking them done, undecided (training
    extraction caches their inputs). `on_crop(track_frame)` sees each face crop before it is
    encoded (e.g. to keep calibration images)."""
    run = Scheduler(detector, runners, family.frame_part, family.content_part,
                    lambda windows: [None] * len(windows), work=analysis.work, on_crop=on_crop)
    return [d.window for d in run.drain(batch) if d.window is not None]


def score_frames(frames: Iterable[tuple[np.ndarray, int, float, float]], bundle: Bundle, runners: dict,
                 detector: FaceDetector, stride: int = 8, min_face_fraction: float = 0.5,
                 end: bool = True, threshold: float | None = None,
                 tracking: TrackingSpec | None = None) -> list[WindowScore]:
    """Scores (pixels, seq, t_capture, t_mono) frames in order; `end` closes the stream."""
    run = scheduler(bundle, runners, detector, threshold)
    analysis = stream_analysis(bundle, stride, min_face_fraction, tracking=tracking, work=run.work)
    scores = []
    for pixels, seq, t_capture, t_mono in frames:
        analysis.add_frame(pixels, seq, t_capture, t_mono)
        scores += [WindowScore(d.window, d.decision) for d in run.drain() if d.window is not None]
    if end:
        analysis.end()
        scores += [WindowScore(d.window, d.decision) for d in run.drain() if d.window is not None]
    return scores
