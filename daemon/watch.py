"""`dfwatch watch`: subscribe to verdicts; a live table on a TTY, JSON lines otherwise."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import zmq

from daemon.protocol import STATUS_TOPIC, VERDICT_TOPIC, ProtocolError, Status, Verdict
from engines.errors import DfwatchError


class NothingPublishing(DfwatchError):
    pass


def subscribe(endpoint: str, stream: str | None, context: zmq.Context | None = None) -> zmq.Socket:
    sub = (context or zmq.Context.instance()).socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, VERDICT_TOPIC + (stream.encode() if stream else b""))
    sub.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)  # a live daemon sends status every second
    sub.connect(endpoint)
    return sub


def receive(sub: zmq.Socket, timeout_s: float) -> Verdict | Status | None:
    """The next valid message, or None after timeout_s without one."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not sub.poll(int(left * 1000) + 1):
            return None
        parts = sub.recv_multipart()
        try:
            return Status.decode(parts) if parts[0] == STATUS_TOPIC else Verdict.decode(parts)
        except ProtocolError:
            continue  # a newer or broken publisher; keep listening
    return None


class Table:
    """The live view: the latest verdict and status counters per stream, redrawn in place."""

    def __init__(self, out):
        self.out, self.verdicts, self.status = out, {}, None

    def update(self, msg) -> None:
        if isinstance(msg, Verdict):
            self.verdicts[msg.stream] = msg
        else:
            self.status = msg
        self.draw()

    def draw(self) -> None:
        s = self.status
        head = f"dfwatch  model {s.model} ({s.backend})  uptime {s.uptime_s:.0f} s" if s else "dfwatch"
        lines = [head + "   (Ctrl-C to quit)", "",
                 f"{'STREAM':16} {'WINDOW':>6} {'LABEL':8} {'SCORE':>6} {'VOTES':>7} {'FACES':>7} {'LATENCY':>9} "
                 f"{'IN/ANALYSED/DROPPED':>20}  STATE"]
        names = sorted(set(self.verdicts) | set(s.streams if s else {}))
        for name in names:
            v, st = self.verdicts.get(name), (s.streams.get(name, {}) if s else {})
            dropped = sum(st.get("dropped", {}).values())
            counts = f"{st.get('frames_in', 0)}/{st.get('analysed', 0)}/{dropped}" if st else ""
            if v:
                score = "-" if v.score is None else f"{v.score:.3f}"
                label = v.label + ("*" if v.untrained else "")
                votes = "-" if v.fake_frames is None else f"{v.fake_frames}/{v.faces}"  # dldfd: face frames voting fake
                lines.append(f"{name:16} {v.window:6d} {label:8} {score:>6} {votes:>7} {v.faces:3d}/{v.frames:<3d} "
                             f"{v.latency_ms:7.0f}ms {counts:>20}  {st.get('state', '')}")
            else:
                lines.append(f"{name:16} {'':6} {'waiting':8} {'':6} {'':7} {'':7} {'':9} {counts:>20}  "
                             f"{st.get('state', '')}")
        if any(v.untrained for v in self.verdicts.values()):
            lines += ["", "* untrained head (demo or no --head): scores mean nothing"]
        self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        self.out.flush()


def watch(endpoint: str, stream: str | None = None, as_json: bool = False, timeout_s: float = 5.0,
          count: int | None = None, out=None) -> int:
    """Prints verdicts until Ctrl-C (or `count` verdicts). Raises NothingPublishing if nothing
    arrives within timeout_s of starting."""
    out = out or sys.stdout
    sub = subscribe(endpoint, stream)
    table = None if as_json or not out.isatty() else Table(out)
    seen, warned = 0, False
    try:
        first = receive(sub, timeout_s)
        if first is None:
            raise NothingPublishing(f"nothing is publishing on {endpoint} (waited {timeout_s:g} s): is "
                                    "'dfwatch run' running, with the same endpoints configuration?")
        msg = first
        while True:
            if msg is None:
                if not warned:
                    print(f"dfwatch watch: no message from {endpoint} for {3 * timeout_s:g} s; still waiting",
                          file=sys.stderr)
                    warned = True
            else:
                warned = False
                if table:
                    table.update(msg)
                elif isinstance(msg, Verdict):
                    out.write(json.dumps(asdict(msg)) + "\n")
                    out.flush()
                if isinstance(msg, Verdict):
                    seen += 1
                    if count and seen >= count:
                        return 0
            msg = receive(sub, 3 * timeout_s)
    finally:
        sub.close()
