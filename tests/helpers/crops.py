"""Whole sequences at once, for tests that check the per-frame pipeline against them: follow,
smooth and crop every frame with the functions the daemon applies frame by frame."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.pipeline.preprocess import CropSpec, Face, FaceTrack, crop_face, smooth_one


def follow(detections: Sequence[Sequence[Face]], select: str) -> list[Face | None]:
    track = FaceTrack(select)
    return [track.choose(faces) for faces in detections]


def smooth_track(track: Sequence[Face | None], length: int) -> list[Face | None]:
    return [smooth_one(track, i, length) for i in range(len(track))]


def crop_sequence(frames_bgr: Sequence[np.ndarray], detections: Sequence[Sequence[Face]],
                  spec: CropSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size, 3) RGB crops and the (N,) face-found mask of a whole sequence."""
    track = follow(detections, spec.select)
    smoothed = smooth_track(track, spec.smoothing)
    crops = np.stack([crop_face(f, face, spec) for f, face in zip(frames_bgr, smoothed)])
    return crops, np.array([face is not None for face in track])
