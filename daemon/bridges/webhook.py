"""The webhook bridge: POSTs each alert message as JSON, signed, retried, at least once.

Headers follow the Standard Webhooks convention: `webhook-id` (the same for every attempt at one
message: receivers deduplicate by it, since delivery is at least once — a receiver that answered
but whose answer was lost gets the message again), `webhook-timestamp` (Unix seconds of the
attempt) and, with a secret, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
(a `whsec_`-prefixed secret is base64, as Standard Webhooks issues them; any other secret is used
as its UTF-8 bytes). `X-Dfwatch-Signature: sha256=<hex HMAC-SHA256 of the body>` stays for
receivers written against dfwatch 0.2. Retries (1 s doubling to 60 s) on connection errors, 5xx
and 429; a 4xx answer is final (logged, counted as rejected). Waiting messages sit in a queue of
at most `queue_size`; when it is full an alert's `update` goes first (the oldest waiting), and only
when none waits the oldest message of any kind, so a receiver that was down still gets each
alert's start and end; drops are counted by kind and logged. With `events:
start_end` only each alert's start and end are sent (a 7-minute alert is then 2 requests, not 30).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict
from urllib.parse import urlsplit

from daemon.bridges import Bridge, BridgeError, log, read_secret
from daemon.wire.protocol import Alert
from engines.config import check_webhook_url


def signature(secret: str, body: bytes) -> str:
    """The `X-Dfwatch-Signature` header: HMAC-SHA256 of the body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` header value."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(body: bytes) -> str:
    """A webhook-id from the message itself: the same on every retry (and for a repeat of the same message)."""
    return "msg_" + hashlib.sha256(body).hexdigest()[:32]


class WebhookBridge(Bridge):
    kind = "webhook"

    def __init__(self, url: str, secret: str | None = None, queue_size: int = 100, timeout: float = 10.0,
                 max_backoff: float = 60.0, events: str = "all", name: str = "webhook"):
        super().__init__(name)
        try:
            check_webhook_url(url)
        except ValueError as e:
            raise BridgeError(str(e)) from None
        self.url, self.secret, self.timeout, self.max_backoff = url, secret, timeout, max_backoff
        self.events = events
        self.queue: deque[tuple[str, bytes]] = deque()   # (the alert message's state, its JSON body)
        self.queue_size = queue_size
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.last_ok = False
        self.thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self.host = urlsplit(url).hostname  # logs name the host, never the path (it may hold a token)

    @classmethod
    def from_config(cls, c, name: str) -> "WebhookBridge":
        return cls(c.url, read_secret(c.secret_file, "webhook secret"), c.queue, events=c.events, name=name)

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def connected(self) -> bool:
        return self.last_ok

    def start(self) -> None:
        self.thread.start()

    def handle(self, msg) -> None:
        if isinstance(msg, Alert) and (self.events == "all" or msg.state in ("start", "end")):
            self.submit(json.dumps(asdict(msg)).encode(), msg.state)

    def submit(self, body: bytes, event: str = "update") -> None:
        with self.cond:
            if len(self.queue) >= self.queue_size:
                # updates go first (not the one in flight at the head): starts and ends are what a receiver acts on
                victim = next((m for m in list(self.queue)[1:] if m[0] == "update"), self.queue[0])
                self.queue.remove(victim)
                self.count_drop(f"the queue is full (the receiver is down or slow): an alert's {victim[0]} message "
                                "went (updates first)", event=victim[0])
            self.queue.append((event, body))
            self.cond.notify()

    def _work(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            with self.cond:
                while not self.queue and not self.stop.is_set():
                    self.cond.wait(0.5)
                if self.stop.is_set():
                    return
                head = self.queue[0]
                body = head[1]
            outcome = self._post(body)
            if outcome == "retry":
                self.retries += 1
                self.stop.wait(backoff)
                backoff = min(2 * backoff, self.max_backoff)
                continue
            backoff = 1.0
            with self.cond:
                if self.queue and self.queue[0] is head:
                    self.queue.popleft()

    def headers(self, body: bytes, now: float | None = None) -> dict[str, str]:
        msg_id, timestamp = message_id(body), int(now if now is not None else time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "dfwatch", "webhook-id": msg_id,
                   "webhook-timestamp": str(timestamp)}
        if self.secret:
            headers["webhook-signature"] = standard_signature(self.secret, msg_id, timestamp, body)
            headers["X-Dfwatch-Signature"] = signature(self.secret, body)
        return headers

    def _post(self, body: bytes) -> str:
        request = urllib.request.Request(self.url, data=body, headers=self.headers(body), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout):
                self.delivered += 1
                self.last_ok = True
                return "done"
        except urllib.error.HTTPError as e:
            self.last_ok = False
            if e.code == 429 or e.code >= 500:
                log.warning("webhook receiver failed; retrying", host=self.host, status=e.code)
                return "retry"
            self.rejected += 1
            log.error("webhook receiver rejected an alert", host=self.host, status=e.code)
            return "done"
        except (urllib.error.URLError, OSError) as e:
            self.last_ok = False
            log.warning("webhook receiver unreachable; retrying", host=self.host,
                        error=str(getattr(e, "reason", e)))
            return "retry"

    def close(self, drain_s: float = 1.0) -> None:
        """Waits up to `drain_s` for the queue to empty, then stops; what is left is counted as dropped."""
        deadline = time.monotonic() + drain_s
        while self.queue and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.05)
        self.stop.set()
        with self.cond:
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=1.0)  # a POST still in flight is abandoned: the stop has a deadline
        if self.queue:
            self.count_drop("stopped before the receiver took them", len(self.queue))
