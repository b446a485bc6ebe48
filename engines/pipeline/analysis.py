"""Per-stream incremental analysis, one rolling window per face track.

`StreamAnalysis` is one stream's state. It runs no model: it puts work on the shared stage queues
(engines/pipeline/work.py) the moment the work can be done — frames to face-detect, face crops to
encode with the per-frame model (pSp style codes for StyleGRU, P(fake) for DLDFD), content clips
(StyleGRU only), windows whose inputs are complete, the end of a track — and takes the results
back. The daemon, `dfwatch scan` and training all drive it through one scheduler
(engines/pipeline/scheduler.py), so the same frames always give the same model inputs.

Frames are detected in arrival order; then, in frame order, each frame's faces are handed to
tracks (engines/pipeline/tracking.py):
- `select: all`: every face its own track (SORT-style association); a track takes only its own
  face frames, and no verdict mixes two people. A stream with no face for T frames publishes a
  per-stream `no_face` window every stride.
- `select: largest | confident`: one track (id 0) follows one face and takes every frame, faceless
  ones included (the centre crop) — the behaviour before tracks, which training uses, as datasets
  label videos, not faces.

Per track (`TrackWindow`), every frame is cropped and encoded once and a content clip is computed
once and reused by every window that contains it. Window w covers the track's frames
[w*stride, w*stride + T); when a track ends (its face gone longer than `lost_s`, or the stream
ended) its last T frames form a final window (a track shorter than T is padded circularly, as
training pads short videos; with `select: all` only if it had `min_face_fraction * T` frames, or
that fraction of a stream shorter than T).
Faces are smoothed over `crop.smoothing` of the track's frames centred on each, so a frame's crop
is made once its later neighbours are known (or the track has ended). Every step moves a counter
forward; nothing scans the frames a stream holds.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engines.pipeline.preprocess import (CropSpec, Face, FaceTrack, Normalization, crop_face, model_size, normalize,
                                         smooth_one, thumbnail)
from engines.pipeline.tracking import FaceTracker, TrackingSpec
from engines.pipeline.work import STAGES, WorkQueues

SINGLE_TRACK = 0   # the id of the one track of `select: largest | confident`


@dataclass(frozen=True)
class WindowSpec:
    frames: int = 32             # T
    stride: int = 8              # a window every `stride` new frames
    clip_frames: int = 16        # frames per content clip; 0: the model family has no content clips
    min_face_fraction: float = 0.5

    def __post_init__(self):
        if self.clip_frames and self.frames % self.clip_frames:
            raise ValueError(f"window frames {self.frames} must be a multiple of clip_frames {self.clip_frames}")


@dataclass(eq=False)
class FrameRecord:
    """A frame of the stream, until its faces are handed to their tracks and cropped."""
    index: int                   # analysed-frame index within the stream (0, 1, 2, ...)
    seq: int
    t_capture: float
    t_mono: float
    owner: "StreamAnalysis" = field(repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)  # freed once every track cropped it
    size: tuple[int, int] = (0, 0)       # (width, height) of the frame
    faces: list[Face] | None = None      # MTCNN output; None until detected
    holders: int = 0                     # tracks that have not cut their crop from the pixels yet

    def release(self) -> None:
        self.holders -= 1
        if self.holders <= 0:
            self.pixels = None


@dataclass(eq=False)
class TrackFrame:
    """A frame as one track sees it: that track's face in it, its crop and the model's output."""
    index: int                           # position within the track (0, 1, 2, ...)
    frame: FrameRecord = field(repr=False)
    track: "TrackWindow" = field(repr=False)
    chosen: Face | None = None           # the track's face (None: no face, the centre crop; one-track mode only)
    crop: np.ndarray | None = field(default=None, repr=False)       # RGB crop; freed once encoded
    clip_crop: np.ndarray | None = field(default=None, repr=False)  # content-size crop, 8-bit RGB (H, W, 3)
    clip_input: np.ndarray | None = field(default=None, repr=False)  # it normalised (3, H, W), made once when asked
    encoding: np.ndarray | None = field(default=None, repr=False)   # per-frame model output: (levels, 512) or ()

    @property
    def owner(self) -> "StreamAnalysis":
        return self.track.owner

    def normalised_clip_crop(self) -> np.ndarray:
        """The content crop as the content model takes it (3, H, W), normalised once: every frame is
        in two clips, and a runner that normalises on its device never asks."""
        if self.clip_input is None:
            self.clip_input = normalize(self.clip_crop[None], self.owner.content_norm)[0]
        return self.clip_input

    @property
    def found(self) -> bool:
        return self.chosen is not None

    @property
    def seq(self) -> int:
        return self.frame.seq

    @property
    def t_capture(self) -> float:
        return self.frame.t_capture

    @property
    def t_mono(self) -> float:
        return self.frame.t_mono


@dataclass(eq=False)
class Clip:
    """One content clip of a track: `key` is its frames' positions in the track."""
    key: tuple[int, ...]
    track: "TrackWindow" = field(repr=False)
    features: np.ndarray | None = field(default=None, repr=False)

    @property
    def owner(self) -> "StreamAnalysis":
        return self.track.owner


@dataclass(eq=False)
class WindowInputs:
    """What the window's decision needs, plus what the verdict and the evidence report."""
    window: int                  # the window's number within its track (or the stream's no_face windows)
    indices: tuple[int, ...]     # the frames' positions in the track
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
    track: int | None = SINGLE_TRACK     # None: a stream-level no_face window (no face in any track)
    seqs: tuple[int, ...] = ()           # (T,) the frames' sequence numbers
    boxes: np.ndarray | None = field(default=None, repr=False)  # (T, 4) face boxes in frame pixels, NaN: none
    frame_size: tuple[int, int] = (0, 0)  # (width, height)
    owner: "StreamAnalysis | None" = field(default=None, repr=False)
    thumbnail: np.ndarray | None = field(default=None, repr=False)  # the track's face (BGR), on its first window

    @property
    def box(self) -> list[float] | None:
        """The window's mean face box as fractions of the frame (x1, y1, x2, y2), None without a face."""
        if self.boxes is None or not self.faces or not all(self.frame_size):
            return None
        mean = np.nanmean(self.boxes[self.found], axis=0)
        w, h = self.frame_size
        return [round(float(np.clip(v, 0.0, 1.0)), 4) for v in mean / np.array([w, h, w, h])]


@dataclass(eq=False)
class TrackEnd:
    """A track ended and its last window is decided before this: its alert ends here."""
    owner: "StreamAnalysis" = field(repr=False)
    track: int
    t_last: float                # capture time of its last frame


class TrackWindow:
    """One face track's rolling window: crops, encodings, clips and windows over its own frames."""

    def __init__(self, owner: "StreamAnalysis", track_id: int):
        self.owner, self.id = owner, track_id
        self.frames: dict[int, TrackFrame] = {}
        self.count = 0               # frames added
        self.cropped = 0             # frames [0, cropped) are cropped
        self.encoded = 0             # frames [0, encoded) are encoded
        self.deleted = 0             # frames [0, deleted) are forgotten
        self.planned = 0             # windows [0, planned) are due
        self.plans: deque[tuple[int, tuple[int, ...]]] = deque()  # due windows not yet handed to the decision
        self.next_window = 0         # windows [0, next_window) are decided
        self.covered = 0             # frames [0, covered) are in some due window
        self.clips: dict[tuple[int, ...], Clip] = {}
        self.waiting_clips: list[tuple[int, int, Clip]] = []  # heap by last frame: clips whose crops are coming
        self.ended = False
        self.end_queued = False
        self.last_t = 0.0
        self.thumbnail: np.ndarray | None = None   # its first face, small, for people

    @property
    def spec(self) -> WindowSpec:
        return self.owner.spec

    # -- frames -------------------------------------------------------------------------------
    def add(self, frame: FrameRecord, chosen: Face | None) -> None:
        """The track's next frame (its `holders` already count this track)."""
        self.frames[self.count] = TrackFrame(self.count, frame, self, chosen)
        self.count += 1
        self.last_t = frame.t_capture
        self.owner.unencoded += 1
        t, stride = self.spec.frames, self.spec.stride
        while self.planned * stride + t <= self.count:
            self._plan(tuple(range(self.planned * stride, self.planned * stride + t)))
        self._crop_ready()

    def end(self, min_frames: float = 0) -> None:
        """No more frames: the tail is cropped without later neighbours and the final window made
        (when some frames are in no window yet, and the track had at least `min_frames`)."""
        if self.ended:
            return
        self.ended = True
        t = self.spec.frames
        if self.covered < self.count and (self.planned or self.count >= min_frames):
            self._plan(tuple(range(self.count - t, self.count)) if self.count >= t else
                       tuple(i % self.count for i in range(t)))  # circular padding of a short track
        if not self.planned:  # too short for any window: its last frames are not worth a crop
            for i in range(self.cropped, self.count):
                self.frames[i].frame.release()
            self.owner.unencoded -= self.count - self.cropped
            self.cropped = self.count
        self._crop_ready()
        self._queue_ready()

    def _plan(self, indices: tuple[int, ...]) -> None:
        self.plans.append((self.planned, indices))
        self.planned += 1
        self.covered = max(self.covered, max(indices) + 1)
        c = self.spec.clip_frames
        for key in (indices[i:i + c] for i in range(0, len(indices), c)) if c else ():
            if key not in self.clips:
                clip = self.clips[key] = Clip(key, self)
                heapq.heappush(self.waiting_clips, (max(key), id(clip), clip))
        self._release_clips()

    def _crop_ready(self) -> None:
        half = self.owner.crop_spec.smoothing // 2
        while self.cropped < self.count and (self.cropped + half < self.count or self.ended):
            self._make_crop(self.frames[self.cropped])
            self.cropped += 1
        self._release_clips()

    def _make_crop(self, tf: TrackFrame) -> None:
        owner, i = self.owner, tf.index
        smoothing = owner.crop_spec.smoothing
        lo = max(0, i - smoothing // 2)
        near = [self.frames[j].chosen if j in self.frames else None
                for j in range(lo, min(self.count, i + smoothing // 2 + 1))]
        face = smooth_one(near, i - lo, smoothing)
        tf.crop = crop_face(tf.frame.pixels, face, owner.crop_spec)
        if self.thumbnail is None and tf.found:
            self.thumbnail = thumbnail(tf.crop)
        if owner.content_norm is not None:
            tf.clip_crop = model_size(tf.crop[None], owner.content_norm)[0]  # 8-bit; normalised when a clip needs it
        tf.frame.release()
        owner.work.put("encode", tf)

    def _release_clips(self) -> None:
        """Content clips whose every crop exists go to the content stage."""
        while self.waiting_clips and self.waiting_clips[0][0] < self.cropped:
            self.owner.work.put("content", heapq.heappop(self.waiting_clips)[2])

    # -- results ------------------------------------------------------------------------------
    def set_encoding(self, tf: TrackFrame, output: np.ndarray) -> None:
        tf.encoding = np.asarray(output, np.float32)
        tf.crop = None
        self.owner.unencoded -= 1
        while self.encoded < self.count and self.frames[self.encoded].encoding is not None:
            self.encoded += 1
        self._queue_ready()

    def _queue_ready(self) -> None:
        """Hands the due windows whose inputs are complete to the decision, in order, then the end."""
        while self.plans:
            w, indices = self.plans[0]
            if max(indices) >= self.encoded or any(self.clips[k].features is None for k in self._clip_keys(indices)):
                break
            self.plans.popleft()
            self.owner.work.put("decide", self._inputs(w, indices))
        if self.ended and not self.plans and not self.end_queued:
            self.end_queued = True
            if self.planned:  # a track that never had a window has no alert to end
                self.owner.work.put("decide", TrackEnd(self.owner, self.id, self.last_t))
        if self.finished:
            self.owner.tracks.pop(self.id, None)

    def _clip_keys(self, indices: tuple[int, ...]) -> list[tuple[int, ...]]:
        c = self.spec.clip_frames
        return [indices[i:i + c] for i in range(0, len(indices), c)] if c else []

    def _inputs(self, w: int, indices: tuple[int, ...]) -> WindowInputs:
        recs = [self.frames[i] for i in indices]
        distinct = {r.index: r for r in recs}
        faces = sum(r.found for r in distinct.values())
        # a short track's window repeats frames (circular padding): its metadata describes the real
        # frames, the earliest and the latest, not the positions in the padded window
        first, last = distinct[min(distinct)], distinct[max(distinct)]
        keys = self._clip_keys(indices)
        boxes = np.array([r.chosen.box if r.found else (np.nan,) * 4 for r in recs], np.float64)
        return WindowInputs(
            window=w, indices=indices, seq_first=first.seq, seq_last=last.seq, t_first=first.t_capture,
            t_last=last.t_capture, faces=faces, frames=len(distinct),
            encodings=np.stack([r.encoding for r in recs]),
            content=np.stack([self.clips[k].features for k in keys]) if keys else np.zeros(0, np.float32),
            found=np.array([r.found for r in recs]),
            enough_faces=faces >= self.spec.min_face_fraction * len(distinct),
            first=np.array([k == indices.index(i) for k, i in enumerate(indices)]),
            track=self.id, seqs=tuple(r.seq for r in recs), boxes=boxes, frame_size=first.frame.size,
            owner=self.owner, thumbnail=self.thumbnail if w == 0 else None)

    def window_done(self, inputs: WindowInputs) -> None:
        """Marks a window decided and forgets what no later window needs."""
        self.next_window = inputs.window + 1
        # a final window may reach back up to `stride` frames; smoothing needs its neighbours
        keep_from = (self.next_window - 1) * self.spec.stride - self.owner.crop_spec.smoothing
        while self.deleted < min(keep_from, self.encoded):
            self.frames.pop(self.deleted, None)
            self.deleted += 1
        for key in [k for k in self.clips if k[0] < self.next_window * self.spec.stride]:
            del self.clips[key]
        if self.finished:
            self.owner.tracks.pop(self.id, None)

    @property
    def finished(self) -> bool:
        return self.end_queued and self.next_window >= self.planned


class StreamAnalysis:
    def __init__(self, spec: WindowSpec, crop: CropSpec, frame_norm: Normalization,
                 content_norm: Normalization | None = None, tracking: TrackingSpec | None = None,
                 work: WorkQueues | None = None, first_track: int = 1, name: str = "", fps: float = 8.0):
        """`tracking` None: one track following the face `crop.select` chooses (training's way);
        `work`: the stage queues shared with other streams (a private one by default); `fps`: the
        analysis rate. Tracks run on the frames' place in the stream at that rate, never on clocks:
        an unpaced file is read faster than real time and a scan reads no clock at all, and the
        same frames must make the same tracks everywhere."""
        if (content_norm is None) != (spec.clip_frames == 0):
            raise ValueError("content clips need both clip_frames and a content normalisation")
        self.spec, self.crop_spec = spec, crop
        self.frame_norm, self.content_norm = frame_norm, content_norm
        self.tracking = tracking or TrackingSpec(select=crop.select)
        self.work = work if work is not None else WorkQueues()
        self.name, self.fps = name, fps
        self.queued = dict.fromkeys(STAGES, 0)   # this stream's live items on each stage's queue
        self.discarded = False
        self.pending: dict[int, FrameRecord] = {}   # frames not yet handed to tracks
        self.count = 0               # frames added
        self.tracked = 0             # frames [0, tracked) are handed to tracks
        self.unencoded = 0           # track frames not encoded yet
        self.tracks: dict[int, TrackWindow] = {}    # tracks whose windows are not all decided
        self.single = self.tracking.select != "all"
        self.follow = FaceTrack(self.tracking.select) if self.single else None
        self.tracker = None if self.single else FaceTracker(self.tracking, first_track)
        self.faces_dropped = 0       # faces beyond max_tracks, not analysed
        self.windows_made = 0        # windows of any track, and no_face windows
        self.empty: deque[FrameRecord] = deque(maxlen=spec.frames)  # the latest frames, for no_face windows
        self.empty_run = 0           # consecutive frames without a face (select: all)
        self.no_face_windows = 0
        self.ended = False
        self.closed = False          # ended and every frame handed to its tracks

    # -- input --------------------------------------------------------------------------------
    def add_frame(self, pixels: np.ndarray, seq: int, t_capture: float, t_mono: float) -> FrameRecord:
        record = FrameRecord(self.count, seq, t_capture, t_mono, self, pixels=pixels,
                             size=(int(pixels.shape[1]), int(pixels.shape[0])))
        self.pending[self.count] = record
        self.count += 1
        self.work.put("detect", record)
        return record

    def end(self) -> None:
        """The source ended: every track ends (smoothing without later neighbours, final windows)."""
        self.ended = True
        self._advance()

    def discard(self) -> None:
        """Thrown away (a restarted capture, a failed model call): its queued work is skipped."""
        self.work.discard(self)

    # -- detection and tracking ---------------------------------------------------------------
    def set_detections(self, record: FrameRecord, faces: list[Face]) -> None:
        record.faces = faces
        self._advance()

    def _advance(self) -> None:
        """Hands detected frames to their tracks in frame order; closes the tracks at the end."""
        while self.tracked < self.count and self.pending[self.tracked].faces is not None:
            frame = self.pending.pop(self.tracked)
            self.tracked += 1
            if self.single:
                frame.holders = 1
                self._track(SINGLE_TRACK).add(frame, self.follow.choose(frame.faces))
            else:
                self._assign(frame)
        if self.ended and self.tracked == self.count and not self.closed:
            self._close()

    def _track(self, track_id: int) -> TrackWindow:
        track = self.tracks.get(track_id)
        if track is None:
            track = self.tracks[track_id] = TrackWindow(self, track_id)
        return track

    def _assign(self, frame: FrameRecord) -> None:
        update = self.tracker.update(frame.faces, frame.index / self.fps)
        self.faces_dropped += update.dropped
        frame.holders = len(update.assigned)
        for track_id, face in update.assigned:
            self._track(track_id).add(frame, face)
        for gone in update.ended:
            self._end_track(gone.id)
        if frame.holders == 0:
            frame.pixels = None
        self.empty.append(frame)
        self.empty_run = 0 if update.assigned else self.empty_run + 1
        t, stride = self.spec.frames, self.spec.stride
        if self.empty_run >= t and (self.empty_run - t) % stride == 0:
            self._no_face_window()

    def _end_track(self, track_id: int, stream_frames: int | None = None) -> None:
        """A track whose face left ends with a final window if it had `min_face_fraction * T`
        frames (a face seen for a moment is not worth a verdict); at the stream's end, also if it
        had that fraction of a stream shorter than T (a short file's faces are all there is)."""
        track = self.tracks.get(track_id)
        if track is not None:
            f, t = self.spec.min_face_fraction, self.spec.frames
            track.end(min_frames=f * min(t, stream_frames or t))
            self.windows_made += track.planned
            if not track.planned:
                self.tracks.pop(track_id, None)

    def _close(self) -> None:
        self.closed = True
        if self.single:
            if SINGLE_TRACK in self.tracks:
                self.tracks[SINGLE_TRACK].end()
            return
        for gone in self.tracker.end_all():
            self._end_track(gone.id, stream_frames=self.count)
        if not self.windows_made and self.empty:
            self._no_face_window()  # a stream whose faces never made a window says so once

    def _no_face_window(self) -> None:
        """A stream-level window of the latest T frames, none of which any track analysed."""
        frames = list(self.empty)[-self.spec.frames:]
        n = len(frames)
        self.windows_made += 1
        self.work.put("decide", WindowInputs(
            window=self.no_face_windows, indices=tuple(f.index for f in frames), seq_first=frames[0].seq,
            seq_last=frames[-1].seq, t_first=frames[0].t_capture, t_last=frames[-1].t_capture, faces=0, frames=n,
            encodings=np.zeros(0, np.float32), content=np.zeros(0, np.float32), found=np.zeros(n, bool),
            enough_faces=False, first=np.ones(n, bool), track=None, seqs=tuple(f.seq for f in frames),
            boxes=np.full((n, 4), np.nan), frame_size=frames[-1].size, owner=self))
        self.no_face_windows += 1

    # -- results ------------------------------------------------------------------------------
    def set_encoding(self, tf: TrackFrame, output: np.ndarray) -> None:
        tf.track.set_encoding(tf, output)

    def set_content(self, clip: Clip, features: np.ndarray) -> None:
        clip.features = np.asarray(features, np.float32)
        clip.track._queue_ready()

    def window_done(self, inputs: WindowInputs) -> None:
        """Marks a window decided (its track forgets what no later window needs)."""
        track = self.tracks.get(inputs.track) if inputs.track is not None else None
        if track is not None:
            track.window_done(inputs)

    # -- offline helpers (benchmarks, checks, training extraction), never the daemon's path ---
    def queued_crops(self) -> list[TrackFrame]:
        """The face crops waiting for the per-frame model, oldest first (a scan of the queue)."""
        return [] if self.discarded else [i for i in self.work.queues["encode"] if i.owner is self]

    def due_windows(self) -> list[tuple[int, ...]]:
        """Frame positions of every track's windows due and not yet handed to the decision."""
        return [indices for track in self.tracks.values() for _, indices in track.plans]

    def encoder_input(self, tf: TrackFrame) -> np.ndarray:
        return normalize(tf.crop[None], self.frame_norm)[0]

    def encoder_pixels(self, tf: TrackFrame) -> np.ndarray:
        """The crop as 8-bit RGB at the model's size, for a runner that normalises on its device."""
        return model_size(tf.crop[None], self.frame_norm)[0]

    # -- accounting ---------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Frames received but not yet handed to tracks, plus face crops not yet encoded."""
        return (self.count - self.tracked) + self.unencoded

    @property
    def pending_work(self) -> int:
        """Items waiting for a model call (detection or encoding), not merely for later frames."""
        return self.queued["detect"] + self.queued["encode"]

    @property
    def live_tracks(self) -> int:
        """Faces followed now (a stream's status)."""
        if self.single:
            track = self.tracks.get(SINGLE_TRACK)
            return int(bool(track and not track.ended and track.count and track.frames[track.count - 1].found))
        return len(self.tracker.live)

    @property
    def finished(self) -> bool:
        return self.closed and not self.tracks and not self.queued["decide"]
