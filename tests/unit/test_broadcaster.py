"""Liveness that does not hang on a model call: the PUB socket's own thread repeats the loop's
status with its age (daemon/service/broadcaster.py), health reads that age, and a stopping
daemon's last status says so. Real ZeroMQ sockets over ipc."""
from __future__ import annotations

import threading
import time

import zmq

from daemon.clients.watch import health
from daemon.service.broadcaster import Broadcaster
from daemon.wire.protocol import STATUS_TOPIC, Status


def status(**kw) -> Status:
    return Status(t=time.time(), uptime_s=1.0, model="m", backend="onnxruntime", streams={"door": {}}, **kw)


def test_status_keeps_coming_while_the_loop_is_busy_and_says_how_long(tmp_path):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/pub")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)
    sub.connect(f"ipc://{tmp_path}/pub")
    broadcaster = Broadcaster(ctx, pub, interval=0.1)
    try:
        seen: list[Status] = []
        broadcaster.status(status())   # the loop's last status; then it is "in a model call" (no turn)
        while len(seen) < 8:           # the thread repeats it: the subscriber hears the daemon all along
            if sub.poll(5000):
                seen.append(Status.decode(sub.recv_multipart()))
            else:
                raise AssertionError(f"no status for 5 s after {len(seen)}")
            if len(seen) == 1:
                broadcaster.turned()   # the loop's clock starts with its last turn
        ages = [s.loop_age_s for s in seen[1:]]
        assert ages == sorted(ages) and ages[-1] > 0.3 and all(s.model == "m" for s in seen)
        broadcaster.turned()
        assert broadcaster.current().loop_age_s < 0.1
        broadcaster.close(stopping=status())
        last = None
        while sub.poll(2000):
            last = Status.decode(sub.recv_multipart())
        assert last is not None and last.stopping
    finally:
        sub.close()


def test_health_names_a_stuck_loop_and_a_stopping_daemon(tmp_path):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    endpoint = f"ipc://{tmp_path}/pub"
    pub.bind(endpoint)
    sending = threading.Event()
    message = [status()]

    def keep_sending():
        while not sending.is_set():
            pub.send_multipart(message[0].encode())
            time.sleep(0.05)
    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        assert health(endpoint, 5)[0] == 0
        message[0] = status(loop_age_s=75.0)
        code, line = health(endpoint, 5, max_loop_age=60)
        assert code == 1 and line.startswith("unhealthy: the inference loop has not turned for 75 s"), line
        message[0] = status(stopping=True)
        code, line = health(endpoint, 5)
        assert code == 1 and line == "unhealthy: the daemon is stopping", line
    finally:
        sending.set()
        sender.join()
        pub.close()
