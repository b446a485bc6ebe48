"""Bridges with real parts: `dfwatch bridge mqtt` against Debian's mosquitto (an outage included),
`dfwatch bridge webhook` against a real HTTP server (signature, retries, bounded queue)."""
from __future__ import annotations

import dataclasses
import getpass
import hashlib
import hmac
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import zmq

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.bridges import WebhookBridge, signature
from daemon.wire.protocol import Status, Verdict
from helpers.daemon import DFWATCH, daemon_env, free_port, stop
from helpers.mqtt import Broker, Listener, wait
from helpers.publisher import TestPublisher


def verdict(label: str, stream: str = "door", t: float = 100.0) -> Verdict:
    return Verdict(stream=stream, window=1, seq_first=0, seq_last=7, t_first=t - 1, t_last=t,
                   score=None if label == "no_face" else 0.9, label=label, threshold=0.5, faces=8, frames=8,
                   model="m", backend="torch", latency_ms=5.0)


def alert_start(stream: str = "door"):
    return AlertTracker(stream, AlertRules(open_after=1, open_of=1)).on_verdict(verdict("fake", stream))


class Publisher(TestPublisher):
    """The daemon's side of the socket: a real PUB that a bridge subscribes to."""

    def __init__(self, tmp_path):
        super().__init__(f"ipc://{tmp_path}/verdicts")

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


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    if b.proc.poll() is None:
        b.stop()


def test_mqtt_bridge_publishes_alerts_states_availability_and_outlives_the_broker(tmp_path, broker):
    pub = Publisher(tmp_path)
    listener = Listener(broker.port)
    log = tmp_path / "bridge.log"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "mqtt", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                                         "--endpoint", pub.endpoint, "--verdicts", "--offline-after-s", "2",
                                         "--evidence-url", "https://dfwatch.lan:8080/"],
                              env=daemon_env(tmp_path), stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    node = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
    discovery = f"homeassistant/binary_sensor/dfwatch_{node}/door/config"
    try:
        wait(lambda: listener.last("dfwatch/availability") == b"online", 20, "availability online")
        status = Status(t=1.0, uptime_s=1.0, model="m", backend="onnxruntime", streams={"door": {"alert": None}})
        pub.until([status], lambda: listener.last(discovery) and listener.last("dfwatch/daemon") == b"online", 20,
                  "Home Assistant discovery and the daemon online")
        entity = json.loads(listener.last(discovery))  # the entity that appears by itself in Home Assistant
        assert entity["state_topic"] == "dfwatch/door/alert_state" and entity["device_class"] == "problem"
        assert entity["unique_id"] == f"dfwatch_{node}_door_deepfake" and entity["availability_mode"] == "all"
        assert [a["topic"] for a in entity["availability"]] == ["dfwatch/availability", "dfwatch/daemon"]
        assert entity["device"]["identifiers"] == [f"dfwatch_{node}_door"] and entity["device"]["model"] == "m"
        assert entity["json_attributes_topic"] == "dfwatch/door/attributes"
        assert listener.last("dfwatch/door/alert_state") == b"OFF"
        start = dataclasses.replace(alert_start(), evidence=["door/x/window.webm"])
        pub.until([verdict("fake"), start], lambda: listener.last("dfwatch/door/attributes"), 20, "the alert")
        assert json.loads(listener.last("dfwatch/door/alert"))["alert_id"] == start.alert_id
        # Home Assistant drops an attribute named `state`: the message's is `event`; ISO times; links
        attributes = json.loads(listener.last("dfwatch/door/attributes"))
        assert attributes["event"] == "start" and "state" not in attributes and attributes["alert_id"] == start.alert_id
        assert attributes["t_start_iso"].endswith("+00:00") and "t_end_iso" not in attributes
        assert attributes["evidence_urls"] == ["https://dfwatch.lan:8080/evidence/door/x/window.webm"]
        assert listener.last("dfwatch/door/state") == b"fake"
        assert json.loads(listener.last("dfwatch/door/verdict"))["label"] == "fake"
        wait(lambda: listener.last("dfwatch/door/alert_state") == b"ON", 10, "alert_state ON")
        # the daemon falls silent (no status) for offline_after_s: the broker is told, so Home
        # Assistant shows it unavailable
        wait(lambda: listener.last("dfwatch/daemon") == b"offline", 15, "the daemon offline")
        # online again; its status says no alert is open (the alert's end was lost): alert_state follows it
        pub.until([status], lambda: listener.last("dfwatch/daemon") == b"online", 20, "the daemon online again")

        # an outage that loses the retained messages, while the daemon stays online (its status goes
        # on): the bridge keeps its process, reconnects and publishes every retained topic again,
        # though none of them changed
        beating = threading.Event()

        def beat():
            while not beating.is_set():
                pub.send(status)
                beating.wait(0.2)
        beats = threading.Thread(target=beat)
        beats.start()
        broker.stop()
        try:
            wait(lambda: "reconnecting" in log.read_text(), 20, "the bridge to see the broker gone")
            assert bridge.poll() is None
            broker.start()
            fresh = Listener(broker.port)    # what Home Assistant reads after the restart
            try:
                wait(lambda: fresh.last("dfwatch/daemon") == b"online" and fresh.last("dfwatch/availability") ==
                     b"online" and fresh.last("dfwatch/door/state") == b"fake" and
                     fresh.last("dfwatch/door/alert_state") == b"OFF" and fresh.last("dfwatch/door/attributes") and
                     fresh.last(discovery), 40, "the retained topics republished on reconnect")
            finally:
                fresh.close()
        finally:
            beating.set()
            beats.join()
        pub.until([verdict("real")], lambda: listener.last("dfwatch/door/state") == b"real", 40,
                  "the state after the broker came back")
        # a daemon that says it stops is offline at once, not after the silence limit
        pub.until([dataclasses.replace(status, stopping=True)], lambda: listener.last("dfwatch/daemon") == b"offline",
                  1.5, "the daemon offline as it stops")
    finally:
        code = stop(bridge)
        pub.close()
    assert code == 0
    wait(lambda: listener.last("dfwatch/availability") == b"offline", 10, "availability offline")
    retained = Listener(broker.port)         # a new subscriber gets the retained state and availability
    try:
        wait(lambda: retained.last("dfwatch/door/state") == b"real" and
             retained.last("dfwatch/availability") == b"offline" and retained.last("dfwatch/door/alert_state") == b"OFF"
             and retained.last("dfwatch/door/alert") and retained.last(discovery), 10, "the retained messages")
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
    secret.chmod(0o640)  # group-readable is fine; world-readable is refused (test_config)
    pub = Publisher(tmp_path)
    log = tmp_path / "bridge.log"
    url = f"http://127.0.0.1:{receiver.port}/hooks/dfwatch?token=TOPSECRET"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "webhook", "--url", url, "--secret-file", str(secret),
                                         "--endpoint", pub.endpoint], env=daemon_env(tmp_path),
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    start = alert_start()
    try:
        pub.wait_for_subscriber()  # the subscription reached the publisher: a message sent now arrives
        pub.send(start)  # once: it must arrive once
        ok = wait(lambda: [r for r in receiver.requests if r[2] == 200], 20, "a delivered alert")
        headers, body, _ = ok[0]
        assert json.loads(body)["alert_id"] == start.alert_id and headers["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
        assert headers["X-Dfwatch-Signature"] == expected == signature("s3cret-key", body)
    finally:
        code = stop(bridge, timeout=20)
        pub.close()
        receiver.close()
    assert code == 0
    assert [code for _, b, code in receiver.requests] == [500, 503, 200]  # retried, delivered once (all it sent)
    text = log.read_text()
    assert "retrying" in text and "TOPSECRET" not in text and "s3cret" not in text


def test_webhook_queue_drops_updates_first_when_the_receiver_stays_down():
    """Issue 35.9: the receiver gets each alert's start and end after an outage, updates went first;
    with nothing but starts and ends waiting, the oldest goes. Drops are counted by kind."""
    port = free_port()  # nothing listens there
    bridge = WebhookBridge(f"http://127.0.0.1:{port}/", queue_size=3, timeout=1, max_backoff=0.2)
    bridge.start()
    try:
        events = ["start"] + ["update"] * 6 + ["end"]
        for i, event in enumerate(events):
            bridge.submit(json.dumps({"n": i}).encode(), event)
        assert [(e, json.loads(b)["n"]) for e, b in bridge.queue] == [("start", 0), ("update", 6), ("end", 7)]
        assert bridge.dropped == 5 and bridge.stats().dropped_events == {"update": 5}
        for i in range(8, 10):
            bridge.submit(json.dumps({"n": i}).encode(), "start")
        assert [(e, json.loads(b)["n"]) for e, b in bridge.queue] == [("end", 7), ("start", 8), ("start", 9)]
        assert bridge.stats().dropped_events == {"update": 6, "start": 1} and bridge.dropped == 7
        wait(lambda: bridge.retries >= 2, 10, "retries against the closed port")
        assert bridge.delivered == 0 and bridge.thread.is_alive()
    finally:
        bridge.close(drain_s=0)
    assert not bridge.thread.is_alive()


def test_bridge_arguments_are_checked(tmp_path):
    r = subprocess.run(DFWATCH + ["bridge", "webhook", "--url", "ftp://x/y"], capture_output=True, text=True,
                       timeout=60, env=daemon_env(tmp_path))
    assert r.returncode == 2 and "webhook URL must be http:// or https://" in r.stderr
    r = subprocess.run(DFWATCH + ["bridge", "mqtt", "--broker", "mqtt://127.0.0.1:1", "--password-file",
                                  str(tmp_path / "missing")], capture_output=True, text=True, timeout=60,
                       env=daemon_env(tmp_path))
    assert r.returncode == 2 and "MQTT password file" in r.stderr and "does not exist" in r.stderr
    r = subprocess.run(DFWATCH + ["bridge", "mqtt", "--broker", "127.0.0.1:notaport"], capture_output=True,
                       text=True, timeout=60, env=daemon_env(tmp_path))
    assert r.returncode == 2 and "the port is not a number" in r.stderr and "Traceback" not in r.stderr


def test_webhook_headers_follow_standard_webhooks_and_start_end_only_skips_updates(tmp_path):
    """The signature a Standard Webhooks receiver computes (spec: HMAC-SHA256 over id.timestamp.body,
    base64, 'v1,' prefix; a whsec_ secret is base64) equals ours; start_end sends no updates."""
    import base64

    from daemon.bridges.webhook import standard_signature

    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    bridge = WebhookBridge("http://127.0.0.1:9/x", secret=secret, events="start_end")
    body = b'{"alert_id": "a1", "state": "start"}'
    h = bridge.headers(body, now=1_700_000_000)
    expected = base64.b64encode(hmac.new(b"0123456789abcdef0123456789abcdef", f"{h['webhook-id']}.1700000000.".encode()
                                         + body, hashlib.sha256).digest()).decode()
    assert h["webhook-timestamp"] == "1700000000" and h["webhook-signature"] == f"v1,{expected}"
    assert h["webhook-id"] == bridge.headers(body, now=1_700_000_060)["webhook-id"]  # the same on a retry
    assert standard_signature("plain", "msg_1", 5, b"x") != standard_signature("plain", "msg_2", 5, b"x")
    start = alert_start()
    tracker = AlertTracker("door", AlertRules(open_after=1, open_of=1, update_every=1))
    start = tracker.on_verdict(verdict("fake"))
    update = tracker.on_verdict(verdict("fake", t=101.0))
    for msg in (start, update, tracker.end(102.0)):
        bridge.handle(msg)
    assert [json.loads(b)["state"] for _, b in bridge.queue] == ["start", "end"]


def test_webhook_drops_are_counted_logged_and_reach_the_daemons_status(tmp_path):
    """A receiver that stays down: every dropped alert is counted in the bridge's log and in the
    BridgeStats it pushes to the inference process's frames endpoint."""
    from daemon.wire.protocol import BridgeStats, decode_capture

    pub = Publisher(tmp_path)
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(f"ipc://{tmp_path}/frames")  # where the daemon takes capture and bridge counters
    config = tmp_path / "dfwatch.yaml"
    config.write_text(f"bridges:\n  - kind: webhook\n    url: http://127.0.0.1:{free_port()}/down\n    queue: 2\n")
    log = tmp_path / "bridge.log"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "configured", "0", "--config", str(config), "--endpoint",
                                         pub.endpoint], env=daemon_env(tmp_path), stdout=open(log, "ab"),
                              stderr=subprocess.STDOUT)
    try:
        pub.wait_for_subscriber()
        tracker = AlertTracker("door", AlertRules(open_after=1, open_of=1, update_every=1))
        for i in range(8):
            pub.sock.send_multipart(tracker.on_verdict(verdict("fake", t=100.0 + i)).encode())

        def dropped():
            while pull.poll(100):
                msg = decode_capture(pull.recv_multipart())
                if isinstance(msg, BridgeStats) and msg.dropped >= 5:
                    return msg
        stats = wait(dropped, 20, "BridgeStats with the drops")
        assert stats.bridge == "0-webhook" and stats.type == "webhook" and stats.delivered == 0
        assert stats.queue <= 2 and stats.retries >= 1 and not stats.connected
    finally:
        code = stop(bridge, timeout=20)
        pub.close()
        pull.close()
    assert code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    drops = [line for line in lines if "webhook bridge dropped messages" in line["event"]]
    assert drops and all(line["role"] == "bridge-webhook" and line["bridge"] == "0-webhook" for line in drops)
    assert all(line.get("role") == "bridge-webhook" for line in lines)  # the worker thread's lines too


def _tls_files(tmp_path):
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made with openssl."""
    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dfwatch test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, san in (("broker", "subjectAltName=IP:127.0.0.1"), ("client", "subjectAltName=DNS:dfwatch")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        (tmp_path / f"{name}.ext").write_text(san + "\n")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    for key in tmp_path.glob("*.key"):
        key.chmod(0o600)
    return tmp_path


def test_mqtts_with_a_client_certificate_and_one_line_for_an_unreachable_broker(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: run scripts/setup.sh as root (Debian package openssl)")
    tls = _tls_files(tmp_path)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {tls / 'ca.pem'}\ncertfile {tls / 'broker.pem'}\n"
        f"keyfile {tls / 'broker.key'}\nrequire_certificate true\nallow_anonymous true\n"
        f"user {getpass.getuser()}\n")  # as root, mosquitto would drop to a user that cannot read tmp_path
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    pub = Publisher(tmp_path)
    log = tmp_path / "bridge.log"
    bridge = subprocess.Popen(DFWATCH + ["bridge", "mqtt", "--broker", f"mqtts://127.0.0.1:{port}",
                                         "--ca-file", str(tls / "ca.pem"), "--cert-file", str(tls / "client.pem"),
                                         "--key-file", str(tls / "client.key"), "--endpoint", pub.endpoint],
                              env=daemon_env(tmp_path), stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    down = subprocess.Popen(DFWATCH + ["bridge", "mqtt", "--broker", f"mqtt://127.0.0.1:{free_port()}",
                                       "--endpoint", pub.endpoint], env=daemon_env(tmp_path),
                            stdout=open(tmp_path / "down.log", "ab"), stderr=subprocess.STDOUT)
    import paho.mqtt.client as mqtt

    seen = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.tls_set(ca_certs=str(tls / "ca.pem"), certfile=str(tls / "client.pem"), keyfile=str(tls / "client.key"))
    client.on_connect = lambda c, *a: c.subscribe("dfwatch/#")
    client.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    try:
        wait(lambda: broker.poll() is None and _connectable(port), 10, "the TLS broker")
        client.connect("127.0.0.1", port)
        client.loop_start()
        wait(lambda: ("dfwatch/availability", b"online") in seen, 30, "the bridge online over TLS")
        time.sleep(4)  # the unreachable broker's client retries meanwhile
        lines = (tmp_path / "down.log").read_text().splitlines()
        assert sum("MQTT broker unreachable" in line for line in lines) == 1, lines
    finally:
        client.loop_stop()
        stop(bridge)
        stop(down)
        pub.close()
        broker.terminate()
        broker.wait(10)


def _connectable(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---- the whole daemon -------------------------------------------------------------------------

class SilentCamera:
    """A TCP port that accepts and never answers: a camera whose RTSP handshake hangs, so its
    capture process sits inside an FFmpeg open (the case in which a stop was once SIGKILLed)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port, self.conns = self.sock.getsockname()[1], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def test_run_starts_configured_bridges_alerts_reach_the_webhook_and_a_stop_ends_them(tmp_path, dldfd_bundle,
                                                                                     franck_frames, footage):
    """`dfwatch run` with every window fake (threshold 0) and the webhook bridge it starts from
    `bridges:`. Stream `cam`, a short file read unpaced, ends: the webhook receives its alert's
    start, updates and end. Stream `live` is still alerting when SIGTERM comes, while a camera's
    open hangs (`hung`): the webhook still receives live's end, alert.json records it, and no
    process needs a SIGKILL."""
    import signal

    import cv2

    from helpers.daemon import start

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, franck_frames[0].shape[1::-1])
    for frame in franck_frames:
        writer.write(frame)
    writer.release()
    receiver, camera = Receiver([]), SilentCamera()
    config = tmp_path / "dfwatch.yaml"
    config.write_text(f"bridges:\n  - kind: webhook\n    url: http://127.0.0.1:{receiver.port}/hook\n"
                      f"streams:\n  - {{name: cam, source: {video}, pace: false}}\n"
                      f"  - {{name: live, source: {footage / 'franck.mp4'}}}\n"
                      f"  - {{name: hung, source: 'rtsp://127.0.0.1:{camera.port}/live'}}\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--config", str(config), "--bundle", str(dldfd_bundle), "--set", "capture.fps=8",
                  "--set", "window.stride=2", "--set", "inference.threshold=0.0", "--set", "alerts.update_every=3",
                  "--set", "capture.open_timeout_ms=30000", "--set", "capture.read_timeout_ms=30000"],
                 daemon_env(runtime), log)

    def bodies(stream):
        return [b for b in (json.loads(body) for _, body, _ in receiver.requests) if b["stream"] == stream]
    try:
        cam = wait(lambda: bodies("cam") if any(b["state"] == "end" for b in bodies("cam")) else None, 120,
                   "cam's alert's end at the webhook")
        assert [b["state"] for b in cam][0] == "start" and cam[-1]["state"] == "end"
        assert "update" in {b["state"] for b in cam} and len({b["alert_id"] for b in cam}) == 1
        assert all(b["untrained"] for b in cam)
        evidence = runtime / "evidence" / "cam" / cam[0]["alert_id"]
        assert (evidence / "window.webm").is_file() and (evidence / "faces.jpg").is_file()
        assert "bridge:0-webhook" in log.read_text()

        started = wait(lambda: bodies("live"), 60, "live's alert's start")[0]
        assert started["state"] == "start" and camera.conns  # hung's capture is inside its open
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        states = [b["state"] for b in bodies("live")]
        assert states[-1] == "end" and states.count("end") == 1, states
        alert_json = runtime / "evidence" / "live" / started["alert_id"] / "alert.json"
        assert json.loads(alert_json.read_text())[-1]["state"] == "end"
        assert "did not stop in time" not in log.read_text()
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        blocked = [line for line in lines if "still blocked on the source" in line["event"]]
        assert blocked and blocked[0]["role"] == "capture" and blocked[0]["stream"] == "hung"  # a thread's line
    finally:
        stop(proc, timeout=20)
        receiver.close()
        camera.close()
