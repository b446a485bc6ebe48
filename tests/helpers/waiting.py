"""The one way tests wait: for an event (a condition that becomes true), never for a time."""
from __future__ import annotations

import time


def wait(condition, timeout: float, what: str, step=None, every: float = 0.1, detail=None):
    """Calls `condition()` until it returns something true and returns that; between calls runs
    `step()` (e.g. a subscriber reading its socket for a while) or sleeps `every` seconds. After
    `timeout` seconds: AssertionError naming `what`, with `detail()` (e.g. a log's tail) if given."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (detail() if detail else ""))
        if step is not None:
            step()
        else:
            time.sleep(every)
