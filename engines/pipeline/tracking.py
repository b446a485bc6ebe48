"""Face tracks: which face in this frame is which person, so every face gets its own verdict.

The association is SORT's (Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016), as
ByteTrack and OC-SORT keep it: each live track predicts its box for the new frame (here a constant
velocity from its last two boxes, in place of SORT's Kalman filter), the cost of pairing a track
with a detection is 1 - IoU(prediction, detection), and the pairing that minimises the total cost
is found by the Hungarian method (`scipy.optimize.linear_sum_assignment`). A pair below `min_iou`
is no pair: the face starts a new track, and a track whose face has been gone for longer than
`lost_s` seconds ends. Before association the frame's faces are filtered (`min_size` pixels, the
box's shorter side) and only the `max_tracks` largest are kept; the rest are counted as dropped.

Torch-free and sans-IO: the caller feeds detections in frame order with their times.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

if TYPE_CHECKING:
    from engines.pipeline.preprocess import Face


SELECT = ("all", "largest", "confident")


@dataclass(frozen=True)
class TrackingSpec:
    """The `faces` configuration's tracking settings. `select`: `all` gives every face its own
    track; `largest` / `confident` follows one face per stream (the one overlapping the last
    choice, else the largest / most confident), as before tracks and as training does."""
    select: str = "all"
    max_tracks: int = 8          # faces analysed per frame, largest first
    min_size: float = 0.0        # a face whose box's shorter side is smaller (pixels) is not analysed
    lost_s: float = 1.0          # a track ends when its face has been gone this long
    min_iou: float = 0.3         # a detection continues a track only if it overlaps the prediction this much

    def __post_init__(self):
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")

    @classmethod
    def from_config(cls, faces) -> "TrackingSpec":
        return cls(select=faces.select, max_tracks=faces.max_tracks, min_size=faces.min_size,
                   lost_s=faces.track_lost_s)


@dataclass
class Track:
    id: int
    first_seen: float
    last_seen: float
    box: np.ndarray                                   # the last matched box (x1, y1, x2, y2)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per second
    frames: int = 1

    def predict(self, t: float) -> np.ndarray:
        return self.box + self.velocity * (t - self.last_seen)

    def update(self, box: np.ndarray, t: float) -> None:
        dt = t - self.last_seen
        if dt > 0:
            self.velocity = (np.asarray(box, np.float64) - self.box) / dt
        self.box = np.asarray(box, np.float64)
        self.last_seen = t
        self.frames += 1


@dataclass
class TrackUpdate:
    """What one frame did to the tracks."""
    assigned: list[tuple[int, "Face"]]   # (track id, its face in this frame), largest face first
    started: list[int]                   # ids of tracks this frame started
    ended: list[Track]                   # tracks whose face has been gone longer than lost_s
    dropped: int                         # faces not analysed (beyond max_tracks)


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of two sets of (x1, y1, x2, y2) boxes. A few faces a frame is the
    common case: plain arithmetic there (numpy's call overhead was most of tracking's cost)."""
    if len(a) * len(b) <= 16:
        return np.array([[_iou(p, q) for q in b] for p in a], np.float64).reshape(len(a), len(b))
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda boxes: np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def select_faces(faces: Sequence["Face"], spec: TrackingSpec) -> tuple[list["Face"], int]:
    """The faces to analyse (large enough, the `max_tracks` largest, largest first) and how many
    large-enough faces were dropped for want of room."""
    big = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= spec.min_size]
    big.sort(key=lambda f: f.area, reverse=True)
    return big[:spec.max_tracks], max(0, len(big) - spec.max_tracks)


class FaceTracker:
    """Every face of a stream as a track with an id unique within the tracker's life."""

    def __init__(self, spec: TrackingSpec = TrackingSpec(), first_id: int = 1):
        self.spec = spec
        self.live: dict[int, Track] = {}
        self.next_id = first_id

    def update(self, faces: Sequence["Face"], t: float) -> TrackUpdate:
        chosen, dropped = select_faces(faces, self.spec)
        ids = list(self.live)
        pairs: list[tuple[int, int]] = []
        if ids and chosen:
            overlap = iou_matrix([self.live[i].predict(t) for i in ids], [f.box for f in chosen])
            if overlap.shape == (1, 1):  # one face, one track: nothing to assign
                rows, cols = [0], [0]
            else:
                rows, cols = linear_sum_assignment(1.0 - overlap)
            pairs = [(r, c) for r, c in zip(rows, cols) if overlap[r, c] >= self.spec.min_iou]
        matched = {c: ids[r] for r, c in pairs}
        assigned, started = [], []
        for c, face in enumerate(chosen):
            if c in matched:
                track_id = matched[c]
                self.live[track_id].update(face.box, t)
            else:
                track_id = self.next_id
                self.next_id += 1
                self.live[track_id] = Track(track_id, t, t, np.asarray(face.box, np.float64))
                started.append(track_id)
            assigned.append((track_id, face))
        return TrackUpdate(assigned, started, self.expire(t), dropped)

    def expire(self, t: float) -> list[Track]:
        """Ends (and returns) the tracks whose face has been gone longer than `lost_s` at time t."""
        gone = [track for track in self.live.values() if t - track.last_seen > self.spec.lost_s]
        for track in gone:
            del self.live[track.id]
        return gone

    def end_all(self) -> list[Track]:
        """The stream ended: so does every track."""
        ended = list(self.live.values())
        self.live.clear()
        return ended
