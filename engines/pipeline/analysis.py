"""Per-stream incremental analysis: which model work a stream of frames needs, and when.

`StreamAnalysis` holds one stream's rolling window as a ring of per-frame records and hands out
work items — frames to face-detect, crops to encode with the per-frame model (pSp style codes for
StyleGRU, P(fake) for DLDFD), clips to run through the content trunk (StyleGRU only), windows
ready for their decision — but runs no model itself. The daemon batches those items
across streams; `score_frames` (offline checks, training evaluation) runs them one by one. Both
go through this class, so the same frames always give the same model inputs.

Every frame is detected and encoded once; a content clip is computed once and reused by
every window that contains it. Window w covers analysed frames [w*stride, w*stride + T); at the
end of a stream the last T frames form a final window (a stream shorter than T is padded
circularly, as training pads short videos). Faces are smoothed over `crop.smoothing` frames
centred on each frame, so a frame's crop is made once its later neighbours are detected (or the
stream has ended).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.pipeline.preprocess import (CropSpec, Face, FaceTrack, Normalization, content_clip, crop_face, model_size,
                                normalize, smooth_one)


@dataclass(frozen=True)
class WindowSpec:
    frames: int = 32             # T
    stride: int = 8              # a window every `stride` new frames
    clip_frames: int = 16        # frames per content clip; 0: the model family has no content clips
    min_face_fraction: float = 0.5

    def __post_init__(self):
        if self.clip_frames and self.frames % self.clip_frames:
            raise ValueError(f"window frames {self.frames} must be a multiple of clip_frames {self.clip_frames}")


@dataclass
class FrameRecord:
    index: int                   # analysed-frame index within the stream (0, 1, 2, ...)
    seq: int
    t_capture: float
    t_mono: float
    pixels: np.ndarray | None = field(default=None, repr=False)  # freed once cropped
    faces: list[Face] | None = None      # MTCNN output; None until detected
    chosen: Face | None = None           # the followed face (None: no face in this frame)
    crop: np.ndarray | None = field(default=None, repr=False)    # RGB crop; freed once encoded
    clip_crop: np.ndarray | None = field(default=None, repr=False)  # normalised content-size crop (3, H, W)
    encoding: np.ndarray | None = field(default=None, repr=False)  # per-frame model output: (levels, 512) or ()

    @property
    def found(self) -> bool:
        return self.chosen is not None


@dataclass
class WindowInputs:
    """What the window's decision needs, plus what the verdict reports."""
    window: int
    indices: tuple[int, ...]
    seq_first: int
    seq_last: int
    t_first: float
    t_last: float
    faces: int
    frames: int
    encodings: np.ndarray        # (T, ...) per-frame model outputs: style codes (T, levels, 512) or P(fake) (T,)
    content: np.ndarray          # (clips, 2048); (0,) for a family without content clips
    found: np.ndarray            # (T,) bool: the frame had a face (else the centre crop was used)
    enough_faces: bool
    first: np.ndarray            # (T,) bool: the first occurrence of its frame (False: circular padding)


class StreamAnalysis:
    def __init__(self, spec: WindowSpec, crop: CropSpec, frame_norm: Normalization,
                 content_norm: Normalization | None = None):
        if (content_norm is None) != (spec.clip_frames == 0):
            raise ValueError("content clips need both clip_frames and a content normalisation")
        self.spec, self.crop_spec = spec, crop
        self.frame_norm, self.content_norm = frame_norm, content_norm
        self.records: dict[int, FrameRecord] = {}
        self.track = FaceTrack(crop.select)
        self.count = 0               # frames added
        self.tracked = 0             # frames [0, tracked) have `chosen` decided
        self.next_window = 0
        self.covered = 0             # frames [0, covered) are in some published window
        self.ended = False
        self.clips: dict[tuple[int, ...], np.ndarray | None] = {}  # frame indices -> features (None: pending)

    # -- input --------------------------------------------------------------------------------
    def add_frame(self, pixels: np.ndarray, seq: int, t_capture: float, t_mono: float) -> FrameRecord:
        record = FrameRecord(self.count, seq, t_capture, t_mono, pixels=pixels)
        self.records[self.count] = record
        self.count += 1
        return record

    def end(self) -> None:
        """The source ended: finalise the tail (smoothing without later neighbours, final window)."""
        self.ended = True
        self._advance()

    # -- detection ----------------------------------------------------------------------------
    def needs_detection(self) -> list[FrameRecord]:
        return [r for r in self.records.values() if r.faces is None and r.pixels is not None]

    def set_detections(self, record: FrameRecord, faces: list[Face]) -> None:
        record.faces = faces
        self._advance()

    def _advance(self) -> None:
        """Follows the face in frame order and makes every crop whose smoothing is complete."""
        while self.tracked < self.count and self.records[self.tracked].faces is not None:
            r = self.records[self.tracked]
            r.chosen = self.track.choose(r.faces)
            self.tracked += 1
        half = self.crop_spec.smoothing // 2
        for r in self.records.values():
            if r.crop is None and r.pixels is not None and r.index < self.tracked and \
                    (r.index + half < self.tracked or (self.ended and self.tracked == self.count)):
                self._make_crop(r)

    def _make_crop(self, r: FrameRecord) -> None:
        lo = max(0, r.index - self.crop_spec.smoothing // 2)
        neighbourhood = [self.records[i].chosen if i in self.records else None for i in range(lo, self.tracked)]
        face = smooth_one(neighbourhood, r.index - lo, self.crop_spec.smoothing)
        r.crop = crop_face(r.pixels, face, self.crop_spec)
        if self.content_norm is not None:
            r.clip_crop = content_clip(r.crop[None], self.content_norm)[:, 0]  # (3, H, W) normalised
        r.pixels = None

    # -- the per-frame model ------------------------------------------------------------------
    def needs_encoding(self) -> list[FrameRecord]:
        return [r for r in self.records.values() if r.crop is not None and r.encoding is None]

    def encoder_input(self, record: FrameRecord) -> np.ndarray:
        return normalize(record.crop[None], self.frame_norm)[0]

    def encoder_pixels(self, record: FrameRecord) -> np.ndarray:
        """The crop as 8-bit RGB at the model's size, for a runner that normalises on its device."""
        return model_size(record.crop[None], self.frame_norm)[0]

    def set_encoding(self, record: FrameRecord, output: np.ndarray) -> None:
        record.encoding = np.asarray(output, np.float32)
        record.crop = None

    # -- windows and clips --------------------------------------------------------------------
    def _window_plans(self) -> list[tuple[int, tuple[int, ...]]]:
        """(window id, frame indices) of the windows due now, in order."""
        t, stride = self.spec.frames, self.spec.stride
        plans = []
        w = self.next_window
        while w * stride + t <= self.count:
            plans.append((w, tuple(range(w * stride, w * stride + t))))
            w += 1
        covered = plans[-1][1][-1] + 1 if plans else self.covered
        if self.ended and covered < self.count:  # the final window: the last T frames
            indices = tuple(range(self.count - t, self.count)) if self.count >= t else \
                tuple(i % self.count for i in range(t))  # circular padding of a short stream
            plans.append((w, indices))
        return plans

    def due_windows(self) -> list[tuple[int, ...]]:
        """Frame indices of the windows due now, oldest first (whether or not their inputs are ready)."""
        return [indices for _, indices in self._window_plans()]

    def _clip_keys(self, indices: tuple[int, ...]) -> list[tuple[int, ...]]:
        c = self.spec.clip_frames
        if not c:
            return []
        return [indices[i:i + c] for i in range(0, len(indices), c)]

    def needs_content(self) -> list[tuple[int, ...]]:
        """Clips of due windows whose frames are all cropped and that are not computed yet."""
        pending = []
        for _, indices in self._window_plans():
            for key in self._clip_keys(indices):
                if self.clips.get(key) is None and key not in pending and \
                        all(self.records[i].clip_crop is not None for i in key):
                    pending.append(key)
        return pending

    def clip_input(self, key: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.stack([self.records[i].clip_crop for i in key], axis=1))  # (3, T, H, W)

    def set_content(self, key: tuple[int, ...], features: np.ndarray) -> None:
        self.clips[key] = np.asarray(features, np.float32)

    def _ready(self, indices: tuple[int, ...]) -> bool:
        return all(self.records[i].encoding is not None for i in indices) and \
            all(self.clips.get(k) is not None for k in self._clip_keys(indices))

    def has_ready_window(self) -> bool:
        plans = self._window_plans()
        return bool(plans) and self._ready(plans[0][1])

    def ready_windows(self) -> list[WindowInputs]:
        """Windows whose every frame is encoded and every clip computed, oldest first."""
        ready = []
        for w, indices in self._window_plans():
            if not self._ready(indices):
                break  # windows are published in order
            ready.append(self._inputs(w, indices, self._clip_keys(indices)))
        return ready

    def _inputs(self, w: int, indices: tuple[int, ...], keys: list[tuple[int, ...]]) -> WindowInputs:
        recs = [self.records[i] for i in indices]
        distinct = {r.index: r for r in recs}
        faces = sum(r.found for r in distinct.values())
        # a short stream's window repeats frames (circular padding): its metadata describes the real
        # frames, the earliest and the latest, not the positions in the padded window
        first, last = distinct[min(distinct)], distinct[max(distinct)]
        return WindowInputs(
            window=w, indices=indices, seq_first=first.seq, seq_last=last.seq, t_first=first.t_capture,
            t_last=last.t_capture, faces=faces, frames=len(distinct),
            encodings=np.stack([r.encoding for r in recs]),
            content=np.stack([self.clips[k] for k in keys]) if keys else np.zeros(0, np.float32),
            found=np.array([r.found for r in recs]), enough_faces=faces >= self.spec.min_face_fraction * len(distinct),
            first=np.array([k == indices.index(i) for k, i in enumerate(indices)]))

    def window_done(self, inputs: WindowInputs) -> None:
        """Marks a window published and forgets what no later window needs."""
        self.next_window = inputs.window + 1
        self.covered = max(self.covered, max(inputs.indices) + 1)
        # a final window may reach back up to `stride` frames; smoothing needs its neighbours
        keep_from = (self.next_window - 1) * self.spec.stride - self.crop_spec.smoothing
        for i in [i for i in self.records if i < keep_from]:
            del self.records[i]
        for key in [k for k in self.clips if k[0] < self.next_window * self.spec.stride]:
            del self.clips[key]

    # -- accounting ---------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Frames received but not yet encoded (the stream's queue in this process)."""
        return sum(1 for r in self.records.values() if r.encoding is None)

    @property
    def pending_work(self) -> int:
        """Frames waiting for a model call (detection or encoding), not merely for later frames."""
        return sum(1 for r in self.records.values()
                   if (r.faces is None and r.pixels is not None) or (r.crop is not None and r.encoding is None))

    @property
    def finished(self) -> bool:
        return self.ended and self.covered >= self.count
