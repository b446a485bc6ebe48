"""systemd's notify protocol in plain Python: one datagram per message to $NOTIFY_SOCKET.

The supervisor is the service's main process and the only one that talks to systemd; the
inference process sends its READY/WATCHDOG/EXTEND_TIMEOUT_USEC messages to the supervisor's own
relay socket (same wire format), so a hung model call stops the watchdog pings.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

RELAY_ENV = "DFWATCH_NOTIFY"


def _address(path: str) -> str | bytes:
    return "\0" + path[1:] if path.startswith("@") else path  # '@' = Linux abstract namespace


def send(message: str, path: str | None = None) -> bool:
    """Sends `message` (e.g. 'READY=1') to `path` or $NOTIFY_SOCKET; False when there is none."""
    path = path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(_address(path))
            s.send(message.encode())
        except OSError:
            return False
    return True


def to_supervisor(message: str) -> bool:
    """From a child process: to the supervisor's relay socket (if started by `dfwatch run`)."""
    path = os.environ.get(RELAY_ENV)
    return send(message, path) if path else False


class Relay:
    """The supervisor's datagram socket that children notify; `receive()` never blocks."""

    def __init__(self, path: Path):
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.sock.bind(str(path))

    def receive(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode(errors="replace"))
            except BlockingIOError:
                return messages

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
