"""The PUB socket on a thread of its own, so that the daemon looks alive while a model call takes
seconds and looks stuck only when it is.

The inference loop hands every message (verdicts, alerts, status) to `Broadcaster.send`, which
queues it on an inproc pipe and never blocks; the thread sends it on the PUB socket. Every
`interval` seconds the thread also publishes the loop's latest status again, with `t` now and
`loop_age_s` the seconds since the loop last finished a turn: on a busy host a detection call of
2.4 s no longer silences the status (bridges declared the daemon offline after 5 s of silence),
and a loop that is truly stuck shows as a growing `loop_age_s` (`dfwatch health`, the metric
`dfwatch_loop_age_seconds`). A stopping daemon publishes one last status saying `stopping`.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import zmq

from daemon.wire.protocol import STATUS_TOPIC, Status

_STOP = b"\0stop"
_pipes = itertools.count()


class Broadcaster:
    def __init__(self, context: zmq.Context, pub: zmq.Socket, interval: float):
        """`pub`: the bound PUB socket, used by this object's thread only from now on."""
        self.interval = interval
        self.latest: Status | None = None     # the loop's last status (replaced whole)
        self.loop_turn = time.monotonic()     # when the loop last finished a turn
        address = f"inproc://dfwatch-broadcast-{next(_pipes)}"
        self._pull = context.socket(zmq.PULL)
        self._pull.bind(address)
        self._push = context.socket(zmq.PUSH)  # the loop's end
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.SNDHWM, 10_000)
        self._push.connect(address)
        self._pub = pub
        self._thread = threading.Thread(target=self._run, name="broadcaster", daemon=True)
        self._thread.start()

    # -- the loop's side -------------------------------------------------------------------------
    def send_multipart(self, parts, flags: int = 0) -> None:
        """Queues a message for the PUB socket; never blocks (a full pipe drops it, as PUB would)."""
        try:
            self._push.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def status(self, status: Status) -> None:
        """The loop's status, published now and repeated by the thread until the next one."""
        self.latest = status
        self.send_multipart(status.encode())

    def turned(self) -> None:
        """Called by the loop at every turn: what `loop_age_s` measures from."""
        self.loop_turn = time.monotonic()

    def current(self) -> Status | None:
        """The latest status with `t` and `loop_age_s` as of now (what /metrics reports)."""
        status = self.latest
        if status is None:
            return None
        return dataclasses.replace(status, t=time.time(), loop_age_s=round(time.monotonic() - self.loop_turn, 3))

    def close(self, stopping: Status | None = None, timeout: float = 1.0) -> None:
        """Sends what is queued and, first, a last status saying the daemon stops; then the thread
        ends and the PUB socket closes, lingering up to `timeout` for slow subscribers."""
        if stopping is not None:
            self.status(dataclasses.replace(stopping, stopping=True))
        self._push.send(_STOP)
        self._thread.join(timeout)
        self._push.close()

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        next_beat = time.monotonic() + self.interval
        try:
            while True:
                wait_ms = max(0, int((next_beat - time.monotonic()) * 1000))
                if poller.poll(wait_ms):
                    parts = self._pull.recv_multipart(copy=False)
                    if len(parts) == 1 and parts[0].bytes == _STOP:
                        return
                    self._send(parts)
                    if parts[0].bytes == STATUS_TOPIC:
                        next_beat = time.monotonic() + self.interval
                if time.monotonic() >= next_beat:
                    beat = self.current()
                    if beat is not None:
                        self._send(beat.encode())
                    next_beat = time.monotonic() + self.interval
        finally:
            self._pub.setsockopt(zmq.LINGER, 500)  # what was sent reaches subscribers before exit
            self._pub.close()
            self._pull.close()

    def _send(self, parts) -> None:
        try:
            self._pub.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass
