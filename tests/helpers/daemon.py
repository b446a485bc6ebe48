"""Running the real daemon in tests: processes, sockets and waiting for what they publish."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from daemon.wire.protocol import (ALERT_TOPIC, STATUS_TOPIC, VERDICT_TOPIC, Alert, ProtocolError, Status,
                                  StreamStatus, Verdict)

DFWATCH = [sys.executable, "-m", "engines.cli"]
# A stream not (yet) in the status: no wait on its counters or state is satisfied by it.
ABSENT = StreamStatus(state="absent", queue_depth=-1, last_frame_age_s=float("inf"))


def daemon_env(runtime_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFWATCH__") and k != "NOTIFY_SOCKET"}
    env["DFWATCH__ENDPOINTS__RUNTIME_DIR"] = str(runtime_dir)
    env["DFWATCH__LOGGING__FORMAT"] = "json"
    env["DFWATCH__METRICS__PORT"] = "0"                         # tests that scrape pick a free port
    env["DFWATCH__EVIDENCE__DIR"] = str(runtime_dir / "evidence")  # never the user's data directory
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_error(output: str) -> str:
    """The message of the one structured error line a command wrote (JSON logging, as under
    `dfwatch run` or systemd): every line must be JSON."""
    import json

    lines = [json.loads(line) for line in output.splitlines()]
    errors = [line["event"] for line in lines if line["level"] == "error"]
    assert len(errors) == 1, output
    return errors[0]


def start(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(DFWATCH + command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def children(pid: int) -> dict[int, str]:
    """Direct child pids of `pid` -> their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return out


def child_pid(pid: int, word: str) -> int | None:
    return next((p for p, cmd in children(pid).items() if f" {word} " in f" {cmd} "), None)


class Subscriber:
    """A SUB socket on the daemon's verdict endpoint that keeps what it receives."""

    def __init__(self, endpoint: str, topic: bytes = b"", keys=None):
        from daemon.wire.curve import as_client

        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        as_client(self.sock, keys)  # CURVE client keys for a tcp endpoint (daemon/wire/curve.py)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.verdicts: list[Verdict] = []
        self.statuses: list[Status] = []
        self.alerts: list[Alert] = []

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                return
            parts = self.sock.recv_multipart()
            try:
                if parts[0] == STATUS_TOPIC:
                    self.statuses.append(Status.decode(parts))
                elif parts[0].startswith(VERDICT_TOPIC):
                    self.verdicts.append(Verdict.decode(parts))
                elif parts[0].startswith(ALERT_TOPIC):
                    self.alerts.append(Alert.decode(parts))
            except ProtocolError:
                raise AssertionError(f"the daemon published an invalid message: {parts[:1]}")

    def wait_for(self, condition, timeout: float, what: str, log: Path | None = None):
        """`helpers.waiting.wait` for `condition(self)`, reading the socket meanwhile; on a
        timeout the daemon log's tail is in the message."""
        from helpers.waiting import wait

        tail = lambda: "\n--- daemon log tail ---\n" + (log.read_text()[-3000:] if log and log.exists() else "")  # noqa: E731
        return wait(lambda: condition(self), timeout, what, step=lambda: self.pump(0.25), detail=tail)

    def stream(self, name: str) -> StreamStatus:
        """The stream's counters in the latest status (ABSENT before it appears there)."""
        return self.statuses[-1].streams.get(name, ABSENT) if self.statuses else ABSENT

    def of(self, stream: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.stream == stream]

    def close(self) -> None:
        self.sock.close()


def serve_file(bundle: Path, clip: Path, tmp_path: Path, count: int, settings: tuple = ()) -> list[Verdict]:
    """`dfwatch run` on one file read unpaced (stream `a`) until `count` verdicts came; they are
    returned (what a scan of the same file must equal)."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(bundle), "--stream", f"a={clip}", "--set", "capture.pace=false",
                  *settings], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: len(s.of("a")) >= count, 120, "the daemon's verdicts for the file", log)
    finally:
        sub.close()
        assert stop(proc) == 0
    return sub.of("a")


def serve_frames(bundle: Path, frames: list, stream: str, work: Path, count: int, settings: tuple = ()) -> list[Verdict]:
    """Runs `dfwatch infer` on `bundle`, pushes `frames` — (pixels, seq, t_capture, t_mono) — as
    one stream followed by its end, and returns the first `count` verdicts of that stream."""
    from daemon.wire.protocol import EndOfStream, Frame

    runtime = work / "run"
    runtime.mkdir()
    log = work / "infer.log"
    # the frames carry recorded capture times: the age limit is for live frames
    proc = start(["infer", "--bundle", str(bundle), "--set", "inference.max_frame_age_s=0", *settings],
                 daemon_env(runtime), log)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"ipc://{runtime}/frames")
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: s.statuses, 60, "the inference process to serve", log)
        for pixels, seq, t_capture, t_mono in frames:
            push.send_multipart(Frame(stream, seq, t_capture, t_mono, pixels).encode())
        push.send_multipart(EndOfStream(stream, frames[-1][1]).encode())
        return sub.wait_for(lambda s: s.of(stream)[:count] if len(s.of(stream)) >= count else None, 120,
                            f"{count} verdict(s)", log)
    finally:
        sub.close()
        push.close()
        assert stop(proc) == 0


def against_publisher(tmp_path: Path, publish, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `dfwatch <argv> --endpoint E` while `publish(pub, done)` feeds a real PUB socket bound at
    E from a thread (until `done` is set, which happens when the command has returned); `pub` is a
    `TestPublisher`: `pub.wait_for_subscriber()` before a message that must arrive."""
    import threading

    from helpers.publisher import TestPublisher

    endpoint = f"ipc://{tmp_path}/publisher"
    pub = TestPublisher(endpoint)
    done = threading.Event()
    thread = threading.Thread(target=publish, args=(pub, done), daemon=True)
    thread.start()
    try:
        return subprocess.run(DFWATCH + argv + ["--endpoint", endpoint], capture_output=True, text=True,
                              timeout=timeout)
    finally:
        done.set()
        thread.join()
        pub.close()
