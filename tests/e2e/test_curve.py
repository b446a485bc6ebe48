"""CURVE on tcp endpoints: only clients with an allowed key push frames or receive verdicts."""
from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
import zmq

from daemon.wire import curve
from daemon.wire.protocol import Frame
from helpers.daemon import DFWATCH, Subscriber, daemon_env, free_port, start, stop
from helpers.waiting import wait


@pytest.fixture
def keys_dir(tmp_path):
    root = tmp_path / "keys"
    r = subprocess.run(DFWATCH + ["keys", "generate", str(root)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (root / "server.key_secret").stat().st_mode & 0o777 == 0o600
    assert (root / "clients" / "capture.key_secret").stat().st_mode & 0o777 == 0o600
    return root


def stranger_keys(tmp_path, server_public: bytes) -> curve.Keys:
    """A well-formed key pair the daemon was never told about."""
    public, secret = zmq.curve_keypair()
    return curve.Keys(public, secret, server_public)


def test_only_clients_with_allowed_keys_get_in(keys_dir, dldfd_bundle, footage, tmp_path):
    frames, verdicts = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = daemon_env(runtime, DFWATCH__ENDPOINTS__FRAMES=frames, DFWATCH__ENDPOINTS__VERDICTS=verdicts,
                     DFWATCH__ENDPOINTS__CURVE="true", DFWATCH__ENDPOINTS__KEYS_DIR=str(keys_dir))
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(dldfd_bundle), "--stream", f"a={footage / 'franck.mp4'}",
                  "--set", "window.stride=4", "--set", "capture.fps=4", "--set", "inference.status_interval=0.25"],
                 env, log)
    server_public = curve.client_keys(str(keys_dir), "subscriber").server_public
    ctx = zmq.Context.instance()
    allowed = Subscriber(verdicts, keys=curve.client_keys(str(keys_dir), "subscriber"))
    plain = Subscriber(verdicts)                                               # no keys at all
    stranger = Subscriber(verdicts, keys=stranger_keys(tmp_path, server_public))  # a key nobody allowed
    intruders = []
    for keys in (None, stranger_keys(tmp_path, server_public)):
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDHWM, 1000)
        curve.as_client(push, keys)
        push.connect(frames)
        intruders.append(push)
    pixels = np.full((240, 320, 3), 128, np.uint8)
    try:
        allowed.wait_for(lambda s: s.statuses, 60, "status for the allowed subscriber", log)
        for seq in range(40):  # well-formed frames for a made-up stream, from both intruders
            for push in intruders:
                try:
                    push.send_multipart(Frame("intruder", seq, time.time(), time.monotonic(), pixels).encode(),
                                        flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
            allowed.pump(0.05)
        allowed.wait_for(lambda s: len(s.of("a")) >= 2, 90, "verdicts from the authorised capture", log)
        allowed.wait_for(lambda s: s.statuses[-1].invalid.get("unauthorized", 0) >= 1, 10,
                         "the refused handshakes counted", log)
        for sub in (plain, stranger):
            sub.pump(1.0)
            assert sub.verdicts == [] and sub.statuses == []
        assert not any("intruder" in s.streams for s in allowed.statuses)
        assert not any(v.stream == "intruder" for v in allowed.verdicts)
    finally:
        for sock in intruders:
            sock.close()
        for sub in (allowed, plain, stranger):
            sub.close()
        assert stop(proc) == 0


def test_a_revoked_client_key_stops_working_without_a_restart(keys_dir, monkeypatch):
    """The authenticator re-reads the allowed keys: remove NAME.key and NAME is refused."""
    monkeypatch.setattr(curve, "RELOAD_S", 0.2)
    ctx = zmq.Context()
    auth = curve.Authenticator(ctx, str(keys_dir)).start()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    curve.as_server(pub, curve.server_keys(str(keys_dir)))
    port = pub.bind_to_random_port("tcp://127.0.0.1")

    def receives() -> bool:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        curve.as_client(sub, curve.client_keys(str(keys_dir), "subscriber"))
        sub.connect(f"tcp://127.0.0.1:{port}")
        try:
            for _ in range(20):
                pub.send(b"hello")
                if sub.poll(100):
                    return sub.recv() == b"hello"
            return False
        finally:
            sub.close()
    try:
        assert receives()
        key = curve.client_keys(str(keys_dir), "subscriber").public
        assert key in auth.allowed
        (keys_dir / "clients" / "subscriber.key").unlink()
        wait(lambda: key not in auth.allowed, 10, "the authenticator's re-read of the keys, without it")
        assert not receives() and auth.denied >= 1
    finally:
        pub.close()
        auth.close()
        ctx.term()


def test_tcp_without_curve_is_refused_at_start(tmp_path):
    env = daemon_env(tmp_path, DFWATCH__ENDPOINTS__FRAMES="tcp://0.0.0.0:7700")
    r = subprocess.run(DFWATCH + ["infer", "--bundle", str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "tcp://0.0.0.0:7700 is a tcp endpoint without authentication: set curve: true" in r.stderr
    r = subprocess.run(DFWATCH + ["watch", "--endpoint", "tcp://127.0.0.1:7701", "--timeout", "1"],
                       env=daemon_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("dfwatch watch: tcp://127.0.0.1:7701 is a tcp endpoint without auth")
    insecure = daemon_env(tmp_path, DFWATCH__ENDPOINTS__ALLOW_INSECURE_TCP="true")
    r = subprocess.run(DFWATCH + ["watch", "--endpoint", "tcp://127.0.0.1:7701", "--timeout", "1"],
                       env=insecure, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "dfwatch watch: nothing is publishing" in r.stderr  # allowed, warned
    assert '"level": "warning"' in r.stderr and "without authentication or encryption" in r.stderr
