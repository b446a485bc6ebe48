"""The pipeline's stages as first-in-first-out queues of work items, shared by every stream.

A stream's analysis (engines/pipeline/analysis.py) puts an item on a stage's queue the moment
the item can be worked on: a frame to face-detect when it arrives, a face crop to encode once its
smoothing is complete, a content clip once its crops exist, a window once its inputs are all
there, a track's end after its last window. Whoever runs the models (engines/pipeline/scheduler.py)
takes items from the queues in batches across streams and tracks. So a loop turn costs what it
does, never what the streams hold: nothing scans every stream or every frame to find work.

An item names its `owner` (the stream's analysis). A stream whose analysis is thrown away (a
restarted capture, a failed model call) is marked `discarded`: its items stay queued and are
skipped when they come up, and the queue's count of live items drops at once.
"""
from __future__ import annotations

from collections import deque

STAGES = ("detect", "encode", "content", "decide")


class WorkQueues:
    def __init__(self):
        self.queues: dict[str, deque] = {stage: deque() for stage in STAGES}
        self.waiting: dict[str, int] = dict.fromkeys(STAGES, 0)   # live items per stage

    def put(self, stage: str, item) -> None:
        self.queues[stage].append(item)
        self.waiting[stage] += 1
        item.owner.queued[stage] += 1

    def take(self, stage: str, n: int | None = None) -> list:
        """Up to n live items (all of them with None), oldest first; discarded ones are dropped."""
        queue, taken = self.queues[stage], []
        while queue and (n is None or len(taken) < n):
            item = queue.popleft()
            if item.owner.discarded:
                continue
            item.owner.queued[stage] -= 1
            taken.append(item)
        self.waiting[stage] -= len(taken)
        return taken

    def discard(self, owner) -> None:
        """The owner's queued items no longer count; they are dropped when they come up."""
        owner.discarded = True
        for stage in STAGES:
            self.waiting[stage] -= owner.queued[stage]
            owner.queued[stage] = 0

    def busy(self) -> bool:
        return any(self.waiting.values())
