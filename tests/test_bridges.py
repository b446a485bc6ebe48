"""Bridges with real parts: `dfwatch bridge mqtt` against Debian's mosquitto (an outage included),
`dfwatch bridge webhook` against a real HTTP server (signature, retries, bounded queue)."""
from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import zmq

from daemon.alerts import AlertRules, AlertTracker
from daemon.bridges import WebhookBridge, signature
from daemon.protocol import Verdict
from helpers.daemon import DFWATCH, daemon_env, free_port, stop


def verdict(label: str, stream: str = "door", t: float = 100.0) -> Verdict:
    return Verdict(stream=stream, window=1, seq_first=0, seq_last=7, t_first=t - 1, t_last=t,
                   score=None if label == "no_face" else 0.9, label=label, threshold=0.5, faces=8, frames=8,
                   model="m", backend="torch", latency_ms=5.0)


def alert_start(stream: str = "door"):
    return AlertTracker(stream, AlertRules(open_after=1, open_of=1)).on_verdict(verdict("fake", stream))


class Publisher:
    """The daemon's side of the socket: a real PUB that a bridge subscribes to."""

    def __init__(self, tmp_path):
        self.endpoint = f"ipc://{tmp_path}/verdicts"
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)

    def until(self, messages: list, condition, timeout: float, what: str):
        """Publishes `messages` every 0.2 s (a new subscriber misses the first ones) until condition()."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in messages:
                self.sock.send_multipart(m.encode())
            result = condition()
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def close(self):
        self.sock.close()


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---- MQTT ---------------------------------------------------------------------------------------

class Broker:
    def __init__(self, tmp_path):
        if shutil.which("mosquitto") is None and not shutil.os.path.exists("/usr/sbin/mosquitto"):
            pytest.fail("mosquitto is not installed: run scripts/setup.sh as root (Debian package mosquitto)")
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port, self.log = free_port(), tmp_path / "mosquitto.log"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-p", str(self.port)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    if b.proc.poll() is None:
        b.stop()


class Listener:
    """A paho-mqtt subscriber of dfwatch/#, re-subscribing after each reconnect."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe("dfwatch/#", qos=1)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def last(self, topic: str) -> bytes | None:
        return next((p for t, p, _ in reversed(self.messages) if t == topic), None)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_bridge_publishes_alerts_states_availability_and_outlives_the_broker(tmp_path, broker):
    pub = Publisher(tmp_path)
    listener = Listener(broker.port)
    log = tmp_path / "bridge.log"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "mqtt", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                                         "--endpoint", pub.endpoint, "--verdicts"],
                              env=daemon_env(tmp_path), stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        wait(lambda: listener.last("dfwatch/availability") == b"online", 20, "availability online")
        start = alert_start()
        pub.until([verdict("fake"), start], lambda: listener.last("dfwatch/door/alert"), 20, "the alert")
        assert json.loads(listener.last("dfwatch/door/alert"))["alert_id"] == start.alert_id
        assert listener.last("dfwatch/door/state") == b"fake"
        assert json.loads(listener.last("dfwatch/door/verdict"))["label"] == "fake"

        broker.stop()                        # an outage: the bridge keeps its process and reconnects
        time.sleep(1.5)
        assert bridge.poll() is None
        broker.start()
        pub.until([verdict("real")], lambda: listener.last("dfwatch/door/state") == b"real", 40,
                  "the state after the broker came back")
        assert "reconnecting" in log.read_text()
    finally:
        code = stop(bridge)
        pub.close()
    assert code == 0
    wait(lambda: listener.last("dfwatch/availability") == b"offline", 10, "availability offline")
    retained = Listener(broker.port)         # a new subscriber gets the retained state and availability
    try:
        wait(lambda: retained.last("dfwatch/door/state") == b"real" and
             retained.last("dfwatch/availability") == b"offline", 10, "the retained messages")
    finally:
        retained.close()
        listener.close()


# ---- webhook ------------------------------------------------------------------------------------

class Receiver:
    """A real HTTP server: answers with the scripted status codes first, then 200."""

    def __init__(self, codes: list[int]):
        self.requests: list[tuple[dict, bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = codes.pop(0) if codes else 200
                receiver.requests.append((dict(self.headers), body, code))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_bridge_posts_signed_alerts_and_retries_failures(tmp_path):
    receiver = Receiver([500, 503])
    secret = tmp_path / "secret"
    secret.write_text("s3cret-key\n")
    pub = Publisher(tmp_path)
    log = tmp_path / "bridge.log"
    url = f"http://127.0.0.1:{receiver.port}/hooks/dfwatch?token=TOPSECRET"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "webhook", "--url", url, "--secret-file", str(secret),
                                         "--endpoint", pub.endpoint], env=daemon_env(tmp_path),
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    start = alert_start()
    try:
        wait(lambda: "bridge following" in log.read_text(), 30, "the bridge to subscribe")
        time.sleep(0.5)  # the subscription reaches the publisher
        pub.sock.send_multipart(start.encode())  # once: it must arrive once
        ok = wait(lambda: [r for r in receiver.requests if r[2] == 200], 20, "a delivered alert")
        headers, body, _ = ok[0]
        assert json.loads(body)["alert_id"] == start.alert_id and headers["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
        assert headers["X-Dfwatch-Signature"] == expected == signature("s3cret-key", body)
        time.sleep(1.0)
        assert [code for _, b, code in receiver.requests] == [500, 503, 200]  # retried, delivered once
    finally:
        code = stop(bridge, timeout=20)
        pub.close()
        receiver.close()
    assert code == 0
    text = log.read_text()
    assert "retrying" in text and "TOPSECRET" not in text and "s3cret" not in text


def test_webhook_queue_keeps_the_newest_when_the_receiver_stays_down():
    port = free_port()  # nothing listens there
    bridge = WebhookBridge(f"http://127.0.0.1:{port}/", queue_size=3, timeout=1, max_backoff=0.2)
    bridge.start()
    try:
        for i in range(10):
            bridge.submit(json.dumps({"n": i}).encode())
        assert bridge.dropped == 7 and [json.loads(b)["n"] for b in bridge.queue] == [7, 8, 9]
        wait(lambda: bridge.retries >= 2, 10, "retries against the closed port")
        assert bridge.delivered == 0 and bridge.thread.is_alive()
    finally:
        bridge.close(drain_s=0)
    assert not bridge.thread.is_alive()


def test_bridge_arguments_are_checked(tmp_path):
    r = subprocess.run(DFWATCH + ["bridge", "webhook", "--url", "ftp://x/y"], capture_output=True, text=True,
                       timeout=60, env=daemon_env(tmp_path))
    assert r.returncode != 0 and "webhook URL must be http:// or https://" in r.stderr
    r = subprocess.run(DFWATCH + ["bridge", "mqtt", "--broker", "mqtt://127.0.0.1:1", "--password-file",
                                  str(tmp_path / "missing")], capture_output=True, text=True, timeout=60,
                       env=daemon_env(tmp_path))
    assert r.returncode != 0 and "cannot read the secret file" in r.stderr


# ---- the whole daemon -------------------------------------------------------------------------

def test_run_starts_configured_bridges_and_alerts_reach_the_webhook(tmp_path, dldfd_bundle, franck_frames):
    """`dfwatch run` on a real video file with every window fake (threshold 0): the webhook bridge
    it starts from `bridges:` receives the alert's start, updates and end (the file ends)."""
    import cv2

    from helpers.daemon import start

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, franck_frames[0].shape[1::-1])
    for frame in franck_frames:
        writer.write(frame)
    writer.release()
    receiver = Receiver([])
    config = tmp_path / "dfwatch.yaml"
    config.write_text(f"bridges:\n  - kind: webhook\n    url: http://127.0.0.1:{receiver.port}/hook\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--config", str(config), "--bundle", str(dldfd_bundle), "--stream", f"cam={video}",
                  "--set", "capture.fps=8", "--set", "capture.pace=false", "--set", "window.stride=2",
                  "--set", "inference.threshold=0.0", "--set", "alerts.update_every=3"], daemon_env(runtime), log)
    try:
        bodies = wait(lambda: [json.loads(b) for _, b, _ in receiver.requests]
                      if any(json.loads(b)["state"] == "end" for _, b, _ in receiver.requests) else None,
                      120, "the alert's end at the webhook")
        assert [b["state"] for b in bodies][0] == "start" and bodies[-1]["state"] == "end"
        assert "update" in {b["state"] for b in bodies} and len({b["alert_id"] for b in bodies}) == 1
        assert all(b["stream"] == "cam" and b["untrained"] for b in bodies)
        evidence = runtime / "evidence" / "cam" / bodies[0]["alert_id"]
        assert (evidence / "window.webm").is_file() and (evidence / "faces.jpg").is_file()
        assert "bridge:0-webhook" in log.read_text()
    finally:
        assert stop(proc, timeout=20) == 0
        receiver.close()
