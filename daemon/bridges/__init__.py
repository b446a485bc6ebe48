"""Bridges: subscriber processes that carry alerts and stream states to the tools operators run.

`dfwatch bridge mqtt` publishes to an MQTT broker (Home Assistant with discovery, Node-RED, ...),
`dfwatch bridge webhook` POSTs alerts to a URL (a chat, a ticket system). Each is its own
process, a plain subscriber of the verdict socket like any client, so a slow or absent receiver
can never slow the daemon; `dfwatch run` starts those listed under `bridges:` in the
configuration and restarts them like capture processes. Neither loses its process to an outage.

Every bridge is a `Bridge` (this module): `start`, `handle(message)` for each verdict, alert and
status, `tick` twice a second, `close`, and `stats` — its delivery counters, which `run_bridge`
pushes to the inference process every few seconds (protocol `BridgeStats`), so a drop shows in
the daemon's status and metrics as well as in the bridge's log. A bridge kind is one module here
and one typed configuration class in engines/config.py (`BRIDGE_CONFIGS`); `BRIDGES` maps the
kind to its class.
"""
from __future__ import annotations

import threading
import time

import zmq

from daemon.wire.protocol import BridgeStats
from daemon.wire.subscriber import receive, subscribe
from engines.errors import DfwatchError
from engines.logs import Throttle, get_logger
from engines.secrets import check_secret_file

log = get_logger()
STATS_INTERVAL = 2.0  # seconds between BridgeStats pushes


class BridgeError(DfwatchError):
    pass


class Bridge:
    """The interface every bridge implements; the counters are what `stats` reports."""
    kind = "bridge"

    def __init__(self, name: str):
        self.name = name
        self.delivered = self.dropped = self.rejected = self.retries = 0
        self.dropped_events: dict[str, int] = {}   # dropped alert messages by their state (start, update, end)
        self._throttle = Throttle(10.0)

    def start(self) -> None:
        """Connects (in the background: an unreachable receiver is retried, never fatal)."""

    def handle(self, msg) -> None:
        """One verdict, alert or status message from the daemon."""

    def tick(self) -> None:
        """Called about twice a second, messages or not (timeouts such as a silent daemon)."""

    def close(self) -> None:
        """Delivers what it can within about a second, counts the rest as dropped."""

    @property
    def queued(self) -> int:
        return 0

    @property
    def connected(self) -> bool:
        return False

    def stats(self) -> BridgeStats:
        return BridgeStats(self.name, self.kind, self.delivered, self.dropped, self.rejected, self.retries,
                           self.queued, self.connected, dict(self.dropped_events))

    def count_drop(self, why: str, n: int = 1, event: str | None = None) -> None:
        """Counts `n` lost messages (of an alert's `event`: start, update, end, when known) and says
        so (one line per 10 s): no drop goes unseen."""
        self.dropped += n
        if event:
            self.dropped_events[event] = self.dropped_events.get(event, 0) + n
        if self._throttle.ready("drop"):
            log.warning(f"{self.kind} bridge dropped messages: {why}", bridge=self.name, dropped=self.dropped,
                        **({"by_event": dict(self.dropped_events)} if self.dropped_events else {}))


def read_secret(path: str | None, what: str = "secret") -> str | None:
    """A secret from a file (never from the command line, which every local user can read)."""
    return check_secret_file(path, what) if path else None


def _stats_socket(context: zmq.Context, endpoint: str, keys) -> zmq.Socket:
    from daemon.wire.curve import as_client

    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.IMMEDIATE, 1)  # no daemon, no queue: the next push says the same, cumulatively
    push.setsockopt(zmq.SNDHWM, 4)
    as_client(push, keys)
    push.connect(endpoint)
    return push


def _send_stats(push: zmq.Socket, bridge: Bridge) -> None:
    try:
        push.send_multipart(bridge.stats().encode(), flags=zmq.NOBLOCK)
    except zmq.Again:
        pass


def run_bridge(bridge: Bridge, endpoint: str, stop: threading.Event, keys=None, stats_endpoint: str | None = None,
               context: zmq.Context | None = None) -> int:
    """Starts the bridge and feeds it every verdict, alert and status on `endpoint` until `stop`
    (SIGTERM) is set (`keys`: CURVE client keys for tcp endpoints); pushes its counters to
    `stats_endpoint`, the inference process's frames endpoint, every STATS_INTERVAL seconds and
    once more after `close`, so what the close could not deliver is counted too."""
    context = context or zmq.Context.instance()
    sub = subscribe(endpoint, None, context=context, keys=keys)
    push = _stats_socket(context, stats_endpoint, keys) if stats_endpoint else None
    bridge.start()
    log.info("bridge following", endpoint=endpoint)
    last_stats = 0.0
    try:
        while not stop.is_set():
            msg = receive(sub, 0.5)
            if msg is not None:
                bridge.handle(msg)
            bridge.tick()
            if push is not None and time.monotonic() - last_stats >= STATS_INTERVAL:
                _send_stats(push, bridge)
                last_stats = time.monotonic()
    finally:
        sub.close()
        bridge.close()
        if push is not None:
            _send_stats(push, bridge)
            push.close(linger=200)
    return 0


def make_bridge(config, name: str) -> Bridge:
    """The bridge a typed `bridges:` entry (engines/config.py) describes."""
    return BRIDGES[config.kind].from_config(config, name)


from daemon.bridges.mqtt import MqttBridge  # noqa: E402
from daemon.bridges.webhook import WebhookBridge, signature  # noqa: E402,F401

BRIDGES: dict[str, type[Bridge]] = {b.kind: b for b in (MqttBridge, WebhookBridge)}
