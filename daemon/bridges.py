"""Bridges: subscriber processes that carry alerts and stream states to the tools operators run.

`dfwatch bridge mqtt` publishes to an MQTT broker (Home Assistant, Node-RED, ...), `dfwatch
bridge webhook` POSTs alerts to a URL (a chat, a ticket system). Each is its own process, a plain
subscriber of the verdict socket like any client, so a slow or absent receiver can never slow the
daemon; `dfwatch run` starts those listed under `bridges:` in the configuration and restarts them
like capture processes. Neither loses its process to an outage: the MQTT client reconnects with
backoff (paho-mqtt's own loop), the webhook retries with backoff from a bounded queue that drops
the oldest message, and counts it, when the receiver stays down.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict
from urllib.parse import urlsplit

from daemon.protocol import Alert, Verdict
from daemon.watch import receive, subscribe
from engines.errors import DfwatchError
from engines.logs import get_logger

log = get_logger()


class BridgeError(DfwatchError):
    pass


def follow(endpoint: str, handle, stop: threading.Event, keys=None) -> None:
    """Calls handle(message) for every verdict, alert and status on `endpoint` until `stop` is set
    (`keys`: CURVE client keys for a tcp endpoint)."""
    sub = subscribe(endpoint, None, keys=keys)
    log.info("bridge following", endpoint=endpoint)
    try:
        while not stop.is_set():
            msg = receive(sub, 0.5)
            if msg is not None:
                handle(msg)
    finally:
        sub.close()


def read_secret(path: str | None) -> str | None:
    """A secret from a file (never from the command line, which every local user can read)."""
    if not path:
        return None
    try:
        return open(path, encoding="utf-8").read().strip()
    except OSError as e:
        raise BridgeError(f"cannot read the secret file {path}: {e.strerror}") from None


# ---- MQTT ---------------------------------------------------------------------------------------

class MqttBridge:
    """Publishes `<prefix>/<stream>/alert` (each alert message, JSON, QoS 1), retained
    `<prefix>/<stream>/state` (fake / real / no_face of the latest window), with `verdicts`
    `<prefix>/<stream>/verdict` (JSON), and retained `<prefix>/availability` online / offline
    (offline also as the broker's last will when this process dies)."""

    def __init__(self, broker: str, prefix: str = "dfwatch", username: str | None = None,
                 password: str | None = None, verdicts: bool = False, max_queued: int = 1000):
        import paho.mqtt.client as mqtt

        url = urlsplit(broker if "://" in broker else f"mqtt://{broker}")
        if url.scheme != "mqtt" or not url.hostname:
            raise BridgeError(f"broker {broker!r}: expected mqtt://HOST[:PORT]")
        self.host, self.port = url.hostname, url.port or 1883
        self.prefix, self.verdicts = prefix.rstrip("/"), verdicts
        self.published = self.dropped = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"dfwatch-{socket.gethostname()}-{os.getpid()}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_queued_messages_set(max_queued)  # while the broker is away; past it: dropped
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()  # its thread connects, and reconnects with backoff after any loss

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection", broker=f"{self.host}:{self.port}", reason=str(reason))
            return
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        log.info("MQTT broker connected", broker=f"{self.host}:{self.port}", prefix=self.prefix)

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("MQTT broker connection lost; reconnecting", broker=f"{self.host}:{self.port}",
                        reason=str(reason))

    def handle(self, msg) -> None:
        if isinstance(msg, Alert):
            self._publish(self.topic(msg.stream, "alert"), json.dumps(asdict(msg)), retain=False)
        elif isinstance(msg, Verdict):
            self._publish(self.topic(msg.stream, "state"), msg.label, retain=True)
            if self.verdicts:
                self._publish(self.topic(msg.stream, "verdict"), json.dumps(asdict(msg)), retain=False)

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == 0:
            self.published += 1
        else:
            self.dropped += 1

    def close(self) -> None:
        info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=2)
        except RuntimeError:  # not connected: the last will says offline instead
            pass
        self.client.disconnect()
        self.client.loop_stop()


# ---- webhook ------------------------------------------------------------------------------------

def signature(secret: str, body: bytes) -> str:
    """The `X-Dfwatch-Signature` header: HMAC-SHA256 of the body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookBridge:
    """POSTs each alert message as JSON. Retries (1 s doubling to 60 s) on connection errors, 5xx and
    429; a 4xx answer is final (logged, counted as rejected). Waiting messages sit in a queue of at
    most `queue_size`; when it is full the oldest is dropped and counted."""

    def __init__(self, url: str, secret: str | None = None, queue_size: int = 100, timeout: float = 10.0,
                 max_backoff: float = 60.0):
        if urlsplit(url).scheme not in ("http", "https"):
            raise BridgeError(f"webhook URL must be http:// or https://, got {urlsplit(url).scheme or url!r}")
        self.url, self.secret, self.timeout, self.max_backoff = url, secret, timeout, max_backoff
        self.queue: deque[bytes] = deque()
        self.queue_size = queue_size
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.delivered = self.dropped = self.rejected = self.retries = 0
        self.thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self.host = urlsplit(url).hostname  # logs name the host, never the path (it may hold a token)

    def start(self) -> None:
        self.thread.start()

    def handle(self, msg) -> None:
        if isinstance(msg, Alert):
            self.submit(json.dumps(asdict(msg)).encode())

    def submit(self, body: bytes) -> None:
        with self.cond:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(body)
            self.cond.notify()

    def _work(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            with self.cond:
                while not self.queue and not self.stop.is_set():
                    self.cond.wait(0.5)
                if self.stop.is_set():
                    return
                body = self.queue[0]
            outcome = self._post(body)
            if outcome == "retry":
                self.retries += 1
                self.stop.wait(backoff)
                backoff = min(2 * backoff, self.max_backoff)
                continue
            backoff = 1.0
            with self.cond:
                if self.queue and self.queue[0] is body:
                    self.queue.popleft()

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "User-Agent": "dfwatch"}
        if self.secret:
            headers["X-Dfwatch-Signature"] = signature(self.secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout):
                self.delivered += 1
                return "done"
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                log.warning("webhook receiver failed; retrying", host=self.host, status=e.code)
                return "retry"
            self.rejected += 1
            log.error("webhook receiver rejected an alert", host=self.host, status=e.code)
            return "done"
        except (urllib.error.URLError, OSError) as e:
            log.warning("webhook receiver unreachable; retrying", host=self.host,
                        error=str(getattr(e, "reason", e)))
            return "retry"

    def close(self, drain_s: float = 5.0) -> None:
        """Waits up to `drain_s` for the queue to empty, then stops."""
        deadline = time.monotonic() + drain_s
        while self.queue and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.05)
        self.stop.set()
        with self.cond:
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=self.timeout + 1)


def run_bridge(bridge, endpoint: str, stop: threading.Event, keys=None) -> int:
    """Starts the bridge and feeds it every message on `endpoint` until `stop` (SIGTERM) is set."""
    bridge.start()
    try:
        follow(endpoint, bridge.handle, stop, keys)
    finally:
        bridge.close()
    return 0
