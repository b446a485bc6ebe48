"""The inference process's model work: the scheduler's stages, batched, guarded and timed.

Each call takes at most one batch from a stage's queue (engines/pipeline/scheduler.py), across
streams and tracks, oldest first. A failing model call (a model server that went away, a broken
runner) costs the streams in that batch their windows — they start a new session — and never the
process. Every stage's calls, items and seconds since start go into the status message.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from engines.logs import Throttle, get_logger
from engines.pipeline.scheduler import Decided, Scheduler

log = get_logger()


class ModelStages:
    def __init__(self, scheduler: Scheduler, max_batch: int, stage_names: dict[str, str],
                 on_failure: Callable[[list[str]], None], metrics=None, throttle: Throttle | None = None):
        """`stage_names`: the status name of each stage (the family's part names for encode and
        content); `on_failure(stream names)`: the streams whose batch failed."""
        self.scheduler, self.work = scheduler, scheduler.work
        self.max_batch, self.names, self.on_failure, self.metrics = max_batch, stage_names, on_failure, metrics
        self.stats: dict[str, dict] = {}    # stage -> calls, items, seconds (model work, in the status)
        self.errors = 0
        self._throttle = throttle or Throttle(10.0)

    def detect(self) -> bool:
        return self._run("detect", 2 * self.max_batch, self.scheduler.detect)

    def encode(self) -> bool:
        return self._run("encode", self.max_batch, self.scheduler.encode)

    def content(self) -> bool:
        return self._run("content", self.max_batch, self.scheduler.content)

    def decide(self, publish: Callable[[list[Decided]], None]) -> bool:
        """Decides up to a batch of ready windows and hands them, with any track ends between them,
        to `publish`, in order."""
        return self._run("decide", self.max_batch, lambda items: publish(self.scheduler.decide(items)))

    def round(self, publish: Callable[[list[Decided]], None], stop: Callable[[], bool]) -> bool:
        """One round of every stage, in the loop's order: detection, the decisions ready (cheap:
        they free what their windows held), the per-frame model, content clips and the decisions
        those made ready; `stop()` is asked between stages (a stop waits for one model call, not a
        round). True if any model ran."""
        worked = False
        for stage in (self.detect, lambda: self.decide(publish), self.encode, self.content,
                      lambda: self.decide(publish)):
            if stop():
                break
            worked |= stage()
        return worked

    def _run(self, stage: str, limit: int, fn) -> bool:
        items = self.work.take(stage, limit)
        if not items:
            return False
        name = self.names.get(stage, stage)
        start = time.perf_counter()
        try:
            fn(items)
        except Exception as e:
            streams = sorted({item.owner.name for item in items})
            self.errors += 1
            if self._throttle.ready("model_error"):  # a model server that is down fails every call
                log.exception("model call failed; resetting the streams involved", stage=name, streams=streams,
                              error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__,
                              failures=self.errors)
            self.on_failure(streams)
            return False
        seconds = time.perf_counter() - start
        self.account(name, len(items), seconds)
        if self.metrics:
            self.metrics.model_seconds.labels(name).observe(seconds)
        return True

    def account(self, name: str, items: int, seconds: float) -> None:
        """Adds one call to a stage's totals (the loop's own `receive` too: reading and admitting frames)."""
        totals = self.stats.setdefault(name, {"calls": 0, "items": 0, "seconds": 0.0})
        totals["calls"] += 1
        totals["items"] += items
        totals["seconds"] += seconds
