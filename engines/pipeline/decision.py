"""How a ready window becomes a verdict, per model family — one implementation for the daemon,
offline scoring and training evaluation.

- stylegru: the head scores the whole window (style codes + content clips) -> P(fake);
  the label is `fake` when P >= threshold.
- dldfd (the paper's rule): every frame with a face gets its own label (P(fake) >= threshold);
  the window is `fake` when at least half of those frames vote fake (a tie alerts), and the
  reported score is the mean P(fake) of those frames.
Windows with fewer than `min_face_fraction` frames with a face are `no_face` in both families.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.pipeline.analysis import WindowInputs


@dataclass(frozen=True)
class Decision:
    score: float | None        # None: no_face
    label: str                 # fake | real | no_face
    fake_frames: int | None = None   # dldfd: frames that voted fake (of `voters`)
    voters: int | None = None


NO_FACE = Decision(None, "no_face")


def frame_vote(probabilities: np.ndarray, threshold: float) -> Decision:
    """Majority vote of per-frame labels, with the mean probability beside it."""
    p = np.asarray(probabilities, np.float64)
    if not len(p):
        return NO_FACE
    fake = int((p >= threshold).sum())
    return Decision(float(p.mean()), "fake" if 2 * fake >= len(p) else "real", fake, len(p))


def window_probability(score: float, threshold: float) -> Decision:
    return Decision(score, "fake" if score >= threshold else "real")


def decide(family: str, windows: list[WindowInputs], head_runner, threshold: float) -> list[Decision]:
    """Decisions for ready windows; StyleGRU windows go through the head in one batched call."""
    scored = [w for w in windows if w.enough_faces]
    if family == "dldfd":
        votes = {id(w): frame_vote(w.encodings[w.found], threshold) for w in scored}
    else:
        votes = {}
        if scored:
            probs = head_runner.run(np.stack([w.encodings for w in scored]), np.stack([w.content for w in scored]))
            votes = {id(w): window_probability(float(p), threshold) for w, p in zip(scored, probs)}
    return [votes.get(id(w), NO_FACE) for w in windows]
