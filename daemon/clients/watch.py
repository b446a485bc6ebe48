"""`dfwatch watch`: subscribe to verdicts; a live table on a TTY, JSON lines otherwise.
`dfwatch health`: one status message, judged: exit 0 when the daemon is up and every stream runs."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

import zmq

from daemon.wire.curve import Keys
from daemon.wire.protocol import Alert, Status, StreamStatus, Verdict
from daemon.wire.subscriber import receive, subscribe
from daemon.wire.tracks import LatestByTrack
from engines.errors import DfwatchError


class NothingPublishing(DfwatchError):
    pass


# A stream in any other state is a fault. `blocked`: an unpaced file waiting for the inference process.
HEALTHY_STATES = ("running", "blocked", "ended")
FAULTS = {"connecting": "connecting to its source", "backoff": "waiting to reconnect to its source (backoff)",
          "waiting": "waiting for its source to come up"}


def health(endpoint: str, max_age: float, keys: Keys | None = None, max_loop_age: float = 60.0) -> tuple[int, str]:
    """(exit code, one line): 0 when a status message arrives within `max_age` seconds, the
    inference loop turned within `max_loop_age` seconds (status keeps coming from its own thread
    while a model call takes long: a loop stuck longer is a fault) and every stream in it is
    running (or blocked on the consumer, or ended: a file that finished), else 1 naming what is wrong."""
    sub = subscribe(endpoint, None, topics=(), keys=keys)
    try:
        status = receive(sub, max_age)
    finally:
        sub.close()
    if status is None:
        return 1, (f"unhealthy: no status message from {endpoint} within {max_age:g} s: is dfwatch running, "
                   "with the same endpoints configuration?")
    faults = [f"stream {name} is {FAULTS.get(st.state, st.state)}"
              + (f" ({st.detail})" if st.detail else "")
              for name, st in sorted(status.streams.items()) if st.state not in HEALTHY_STATES]
    if status.loop_age_s > max_loop_age:
        faults.insert(0, f"the inference loop has not turned for {status.loop_age_s:.0f} s (a model call stuck? "
                         "systemd's watchdog restarts it)")
    if status.stopping:
        faults.insert(0, "the daemon is stopping")
    if faults:
        return 1, "unhealthy: " + "; ".join(faults)
    return 0, f"healthy: {len(status.streams)} stream(s), model {status.model} ({status.backend}), up {status.uptime_s:.0f} s"


class Table:
    """The live view, redrawn in place: a row per live face track (its latest verdict, `ALERT`
    while its alert is open) under each stream's status counters."""

    def __init__(self, out):
        self.out, self.tracks, self.status = out, LatestByTrack(), None
        self.alerts: dict[tuple[str, int | None], str] = {}   # (stream, track) -> its open alert's id

    def update(self, msg) -> None:
        if isinstance(msg, Alert):
            if msg.state == "end":
                self.alerts.pop((msg.stream, msg.track), None)
            else:
                self.alerts[(msg.stream, msg.track)] = msg.alert_id
            return
        if isinstance(msg, Verdict):
            self.tracks.update(msg)
        else:
            self.status = msg
        self.draw()

    def draw(self) -> None:
        s = self.status
        head = f"dfwatch  model {s.model} ({s.backend})  uptime {s.uptime_s:.0f} s" if s else "dfwatch"
        lines = [head + "   (Ctrl-C to quit)", "",
                 f"{'STREAM':16} {'TRACK':>5} {'WINDOW':>6} {'LABEL':8} {'SCORE':>6} {'VOTES':>7} {'FACES':>7} "
                 f"{'LATENCY':>9} {'IN/ANALYSED/DROPPED':>20}  STATE"]
        names = sorted(set(self.tracks.streams) | set(s.streams if s else {}))
        for name in names:
            st = (s.streams.get(name) if s else None) or StreamStatus(state="")
            counts = f"{st.frames_in}/{st.analysed}/{sum(st.dropped.values())}" if st.state else ""
            tracks = sorted(self.tracks.of(name).items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            if not tracks:
                lines.append(f"{name:16} {'':5} {'':6} {'waiting':8} {'':6} {'':7} {'':7} {'':9} {counts:>20}  "
                             f"{st.state}")
            for i, (track, v) in enumerate(tracks):
                score = "-" if v.score is None else f"{v.score:.3f}"
                label = v.label + ("*" if v.untrained else "")
                votes = "-" if v.fake_frames is None else f"{v.fake_frames}/{v.faces}"  # dldfd: face frames voting fake
                alert = self.alerts.get((name, track))
                lines.append(f"{name if i == 0 else '':16} {'-' if track is None else track:>5} {v.window:6d} "
                             f"{label:8} {score:>6} {votes:>7} {v.faces:3d}/{v.frames:<3d} {v.latency_ms:7.0f}ms "
                             f"{counts if i == 0 else '':>20}  {st.state if i == 0 else ''}"
                             f"{f'  ALERT {alert[:8]}' if alert else ''}")
        if any(v.untrained for t in self.tracks.streams.values() for v in t.values()):
            lines += ["", "* untrained head (demo or no --head): scores mean nothing"]
        self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        self.out.flush()


def state_changes(status: Status, known: dict[str, str], stream: str | None = None) -> list[dict]:
    """Streams whose state differs from `known` (updated in place): a camera going away and coming
    back shows here, while verdicts simply stop."""
    changes = []
    for name, st in sorted(status.streams.items()):
        state = st.state
        if (stream is None or name == stream) and known.get(name) != state:
            changes.append({"stream": name, "state": state, "previous": known.get(name), "t": status.t})
            known[name] = state
    return changes


def wait_for_publisher(sub: zmq.Socket, endpoint: str, timeout_s: float, stream: str | None, starting):
    """The first message; while nothing comes, waits as long as a daemon holds the endpoints."""
    msg = receive(sub, timeout_s, stream)
    said = False
    while msg is None:
        pid = starting()
        if pid is None:
            raise NothingPublishing(f"nothing is publishing on {endpoint} (waited {timeout_s:g} s): is "
                                    "'dfwatch run' running, with the same endpoints configuration?")
        if not said:
            print(f"dfwatch watch: the daemon (pid {pid}) is starting (loading its models); waiting for it to publish",
                  file=sys.stderr, flush=True)
            said = True
        msg = receive(sub, 1.0, stream)
    return msg


def watch(endpoint: str, stream: str | None = None, as_json: bool = False, timeout_s: float = 5.0,
          count: int | None = None, out=None, alerts: bool = False, states: bool = False,
          keys: Keys | None = None, starting=lambda: None) -> int:
    """Prints verdicts until Ctrl-C (or `count` verdicts); in JSON, with `alerts` the alert messages
    too (they carry `alert_id`), with `states` a line per stream state change (they carry
    `previous`). Raises NothingPublishing if nothing arrives within timeout_s of starting, unless
    `starting()` names the pid of a daemon that holds the endpoints' lock (loading its models):
    then it says so and waits for as long as that daemon lives."""
    known: dict[str, str] = {}
    out = out or sys.stdout
    sub = subscribe(endpoint, stream, keys=keys)
    table = None if as_json or not out.isatty() else Table(out)
    seen, warned = 0, False
    try:
        msg = wait_for_publisher(sub, endpoint, timeout_s, stream, starting)
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
                elif isinstance(msg, Verdict) or (alerts and isinstance(msg, Alert)):
                    out.write(json.dumps(asdict(msg)) + "\n")
                    out.flush()
                elif states and isinstance(msg, Status):
                    for change in state_changes(msg, known, stream):
                        out.write(json.dumps(change) + "\n")
                    out.flush()
                if isinstance(msg, Verdict):
                    seen += 1
                    if count and seen >= count:
                        return 0
            msg = receive(sub, 3 * timeout_s, stream)
    finally:
        sub.close()
