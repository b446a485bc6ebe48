"""The daemon's side of a PUB socket for tests: an XPUB that sees its subscribers' subscriptions,
so a test sends a one-shot message once a subscriber is there, instead of sleeping and hoping."""
from __future__ import annotations

import time

import zmq


class TestPublisher:
    """A real PUB socket (XPUB) bound at `endpoint`; `wait_for_subscriber()` returns once a
    subscriber's subscription has reached it: a message sent after that is delivered."""
    __test__ = False   # not a pytest test class

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.sock = zmq.Context.instance().socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)   # every subscription, even one already known
        self.sock.bind(endpoint)
        self.subscriptions = 0

    def wait_for_subscriber(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.subscriptions == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no subscriber reached {self.endpoint} within {timeout} s")
            if self.sock.poll(int(left * 1000) + 1):
                if self.sock.recv()[:1] == b"\x01":
                    self.subscriptions += 1

    def send_multipart(self, parts, flags: int = 0) -> None:
        self.sock.send_multipart(parts, flags=flags)

    def send(self, message) -> None:
        """A protocol message (its `encode()` parts)."""
        self.sock.send_multipart(message.encode())

    def close(self) -> None:
        self.sock.close()
