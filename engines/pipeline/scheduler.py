"""The one scheduler of model work: the daemon, `dfwatch scan`, training and offline scoring all
run the stage queues (engines/pipeline/work.py) through it.

Each stage takes a batch of items from its queue — across streams and tracks, oldest first — runs
its model once on the batch and hands each result back to the item's stream. Every model computes
per sample, so batching never mixes results. The daemon calls the stages one at a time (it
guards each call and times it); `drain` runs them until the queues are empty, for a caller that
feeds one stream synchronously.

The stages: `detect` (MTCNN on frames), `encode` (the family's per-frame part on face crops:
8-bit crops go to a runner that normalises on its device, else the batch is normalised at once),
`content` (the content part on clips: 8-bit too where the runner normalises, else each crop
normalised once for the two clips it is in) and `decide` (the family's window decision; a track's end
comes out after its last window).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engines.pipeline.analysis import Clip, FrameRecord, TrackEnd, TrackFrame, WindowInputs
from engines.pipeline.decision import Decision
from engines.pipeline.preprocess import model_size, normalize
from engines.pipeline.work import WorkQueues


@dataclass
class Decided:
    """What the decide stage hands back, in queue order: a window with its decision, or a track's end."""
    item: WindowInputs | TrackEnd
    decision: Decision | None = None   # None for a TrackEnd

    @property
    def window(self) -> WindowInputs | None:
        return self.item if isinstance(self.item, WindowInputs) else None


class Scheduler:
    def __init__(self, detector, runners: dict, frame_part: str, content_part: str | None,
                 decide: Callable[[list[WindowInputs]], list[Decision]], work: WorkQueues | None = None,
                 on_crop: Callable[[TrackFrame], None] | None = None):
        """`decide(windows)`: the family's decision at the operating threshold; `on_crop(track_frame)`
        sees each face crop before it is encoded (scan's contact sheets, calibration images)."""
        self.detector, self.runners = detector, runners
        self.frame_part, self.content_part, self._decide = frame_part, content_part, decide
        self.work = work if work is not None else WorkQueues()
        self.on_crop = on_crop

    # -- the stages ---------------------------------------------------------------------------
    def detect(self, items: list[FrameRecord]) -> None:
        for record, faces in zip(items, self.detector.detect([r.pixels for r in items]), strict=True):
            record.owner.set_detections(record, faces)

    def encode(self, items: list[TrackFrame]) -> None:
        if self.on_crop:
            for tf in items:
                self.on_crop(tf)
        runner = self.runners[self.frame_part]
        crops = np.stack([tf.crop for tf in items])
        if getattr(runner, "pixels", None) is not None:  # 8-bit crops, normalised on the device
            outputs = runner.run_pixels(model_size(crops, runner.pixels))
        else:
            outputs = runner.run(normalize(crops, items[0].owner.frame_norm))
        for tf, output in zip(items, outputs, strict=True):
            tf.owner.set_encoding(tf, output)

    def content(self, items: list[Clip]) -> None:
        runner = self.runners[self.content_part]
        if getattr(runner, "pixels", None) is not None:  # 8-bit clips (N, T, H, W, 3), normalised on the device
            features = runner.run_pixels(np.stack([[c.track.frames[i].clip_crop for i in c.key] for c in items]))
        else:                                             # (N, 3, T, H, W) float32, as the clip model takes it
            features = runner.run(np.stack([np.stack([c.track.frames[i].normalised_clip_crop() for i in c.key], axis=1)
                                            for c in items]))
        for clip, f in zip(items, features, strict=True):
            clip.owner.set_content(clip, f)

    def decide(self, items: list) -> list[Decided]:
        """Decisions for the windows among `items` (one batched call), in queue order; each
        window is marked done with its stream."""
        windows = [i for i in items if isinstance(i, WindowInputs)]
        decisions = iter(self._decide(windows) if windows else [])
        out = []
        for item in items:
            if isinstance(item, WindowInputs):
                out.append(Decided(item, next(decisions)))
                item.owner.window_done(item)
            else:
                out.append(Decided(item))
        return out

    # -- a synchronous driver -----------------------------------------------------------------
    def drain(self, batch: int = 1) -> list[Decided]:
        """Runs every queued item (model calls of at most `batch` items; detection all at once)
        until the queues are empty; returns what the decision made, in order."""
        decided: list[Decided] = []
        while self.work.busy():
            if items := self.work.take("detect"):
                self.detect(items)
            while items := self.work.take("encode", batch):
                self.encode(items)
            while items := self.work.take("content", batch):
                self.content(items)
            if items := self.work.take("decide"):
                decided += self.decide(items)
        return decided
