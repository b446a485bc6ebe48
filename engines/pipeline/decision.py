"""The rules by which a ready window becomes a verdict — one implementation for the daemon,
offline scoring and training evaluation. Each family's `decide` (engines/families/) picks one:

- `window_probability`: a model scored the whole window -> P(fake); `fake` when P >= threshold.
- `frame_vote`: every frame with a face has its own P(fake); the window is `fake` when at least
  half of those frames vote fake (P >= threshold; a tie alerts), its score the mean P(fake).
- `frame_mean`: every frame with a face has its own P(fake); the window's score is their mean,
  `fake` when the mean >= threshold (how the ICPR 2020 detectors score a video).
Windows with fewer than `min_face_fraction` frames with a face are `no_face` (`NO_FACE`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class Decision:
    score: float | None        # None: no_face
    label: str                 # fake | real | no_face
    fake_frames: int | None = None   # dldfd: frames that voted fake (of `voters`)
    voters: int | None = None
    # the highest threshold at which this window is fake: fake at threshold t exactly when
    # decisive >= t, so operating points and calibration ask one number (None: no_face)
    decisive: float | None = None


NO_FACE = Decision(None, "no_face")


def frame_vote(probabilities: np.ndarray, threshold: float) -> Decision:
    """Majority vote of per-frame labels, with the mean probability beside it."""
    p = np.asarray(probabilities, np.float64)
    if not len(p):
        return NO_FACE
    fake = int((p >= threshold).sum())
    # fake when at least ceil(n/2) frames have P >= t: when the ceil(n/2)-th largest P is >= t
    decisive = float(np.sort(p)[::-1][(len(p) + 1) // 2 - 1])
    return Decision(float(p.mean()), "fake" if 2 * fake >= len(p) else "real", fake, len(p), decisive)


def frame_mean(probabilities: np.ndarray, threshold: float) -> Decision:
    """The mean probability decides; the frames that alone would be fake are counted beside it."""
    p = np.asarray(probabilities, np.float64)
    if not len(p):
        return NO_FACE
    score = float(p.mean())
    return Decision(score, "fake" if score >= threshold else "real", int((p >= threshold).sum()), len(p), score)


def window_probability(score: float, threshold: float) -> Decision:
    return Decision(score, "fake" if score >= threshold else "real", decisive=score)
