"""The one PUB decoder: a SUB socket on the daemon's verdict endpoint and the next valid message
from it. Every client (watch, health, the dashboard, the bridges, the benchmarks) reads the
daemon through these two functions, so a newer or broken publisher is handled in one place."""
from __future__ import annotations

import time

import zmq

from daemon.wire.curve import Keys, as_client
from daemon.wire.protocol import ALERT_TOPIC, STATUS_TOPIC, VERDICT_TOPIC, Alert, ProtocolError, Status, Verdict


def subscribe(endpoint: str, stream: str | None, context: zmq.Context | None = None,
              topics: tuple[bytes, ...] = (VERDICT_TOPIC, ALERT_TOPIC), keys: Keys | None = None) -> zmq.Socket:
    """A SUB socket for these per-stream topics (of `stream` only, when given) and status;
    `keys`: the CURVE client keys a tcp endpoint needs (daemon/wire/curve.py).

    ZeroMQ matches topics by prefix, so `verdict.door` also delivers `verdict.door2`: `receive`
    drops other streams' messages by their `stream` field (clients in other languages must too)."""
    sub = (context or zmq.Context.instance()).socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    as_client(sub, keys)
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic + (stream.encode() if stream else b""))
    sub.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)  # a live daemon sends status every second
    sub.connect(endpoint)
    return sub


def decode(parts: list) -> Verdict | Alert | Status:
    """One published message by its topic (raises ProtocolError)."""
    if parts[0] == STATUS_TOPIC:
        return Status.decode(parts)
    return Alert.decode(parts) if bytes(parts[0]).startswith(ALERT_TOPIC) else Verdict.decode(parts)


def receive(sub: zmq.Socket, timeout_s: float, stream: str | None = None) -> Verdict | Alert | Status | None:
    """The next valid message (of `stream` only, when given), or None after timeout_s without one."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not sub.poll(int(left * 1000) + 1):
            return None
        try:
            msg = decode(sub.recv_multipart())
        except ProtocolError:
            continue  # a newer or broken publisher; keep listening
        if stream is None or isinstance(msg, Status) or msg.stream == stream:
            return msg
    return None
