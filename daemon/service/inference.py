"""`dfwatch infer`: one process owns the models and every stream's rolling window.

One bound PULL socket takes frames from all capture processes. Each stream has a
`StreamAnalysis` (engines/pipeline/analysis.py) that says which model work its frames need; this loop
batches that work across streams (at most `max_batch` items, waiting at most `max_wait_ms` to
fill a batch): face detection, the per-frame model (pSp style codes, or DLDFD's P(fake)),
content clips (StyleGRU only) and the window decision (engines/pipeline/decision.py: the StyleGRU head,
or DLDFD's majority vote). It publishes a verdict per window on PUB topic `verdict.<stream>` and a status
message every second on `status`. Model calls are per-sample computations, so batching never
mixes streams' results. Invalid messages are counted by reason and never stop the loop.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.outcomes.evidence import EvidenceWriter, FrameStore, WindowEvidence, default_dir, relative_paths
from daemon.service import notify
from daemon.wire import curve
from daemon.wire.endpoints import Endpoints, EndpointsBusy
from daemon.wire.protocol import (Alert, BridgeStats, CaptureStats, EndOfStream, Frame, ProtocolError, Status,
                                  StreamStatus, Verdict, decode_capture)
from engines.pipeline.analysis import FrameRecord, StreamAnalysis, WindowInputs
from engines.pipeline.decision import Decision
from engines.logs import Throttle, get_logger

log = get_logger()
MAX_RECEIVE = 1024         # messages read per loop turn at most (frames: as many as there is room for)
WATCHDOG_INTERVAL = 1.0    # seconds between WATCHDOG=1 pings to the supervisor
STOP_FLUSH_S = 2.0         # on stop, evidence still queued gets this long to be written


@dataclass
class StreamState:
    name: str
    analysis: StreamAnalysis
    frames_in: int = 0
    analysed: int = 0
    windows: int = 0
    window_offset: int = 0       # windows of earlier sessions (a restarted capture), for consecutive ids
    last_seq: int = -1
    last_seen: float = field(default_factory=time.monotonic)     # any message (eviction)
    last_frame: float = field(default_factory=time.monotonic)    # frames only (status)
    dropped: dict[str, int] = field(default_factory=dict)
    capture: CaptureStats | None = None
    alerts: AlertTracker | None = None       # None: alerts are off
    frames: FrameStore | None = None         # recent frames for evidence (None: no evidence kept)
    labels: dict[str, int] = field(default_factory=dict)   # verdicts published, by label

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def status(self, now: float) -> StreamStatus:
        c = self.capture
        dropped = dict(c.dropped) if c else {}
        for reason, n in self.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
        ended = self.analysis.ended
        return StreamStatus(frames_in=self.frames_in, analysed=self.analysed, windows=self.windows, dropped=dropped,
                            reconnects=c.reconnects if c else 0, stalls=c.stalls if c else 0,
                            last_frame_age_s=round(now - self.last_frame, 3), queue_depth=self.analysis.backlog,
                            state="ended" if ended else (c.state if c else "running"),
                            alert=self.alerts.alert.alert_id if self.alerts and self.alerts.active else None,
                            detail=c.detail if c and not ended else "", verdicts=dict(self.labels),
                            alerts_started=self.alerts.started if self.alerts else 0)


def window_verdict(stream: str, window: int, w: WindowInputs, decision: Decision, threshold: float, bundle,
                   backend: str, latency_ms: float) -> Verdict:
    """The verdict message of a decided window (the daemon publishes it; `dfwatch scan` feeds it to
    the alert rule)."""
    return Verdict(stream=stream, window=window, seq_first=w.seq_first, seq_last=w.seq_last, t_first=w.t_first,
                   t_last=w.t_last, score=decision.score, label=decision.label, threshold=threshold, faces=w.faces,
                   frames=w.frames, model=bundle.id, backend=backend, latency_ms=latency_ms,
                   untrained=not bundle.trained, family=bundle.family, fake_frames=decision.fake_frames)


def _bridge_status(b: BridgeStats) -> dict:
    return {k: v for k, v in b.__dict__.items() if k != "bridge"}


def _bind(sock: zmq.Socket, endpoint: str) -> None:
    """Binds, or one line when something else already has the address (another daemon's tcp port)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        raise EndpointsBusy(f"cannot bind {endpoint}: {e.strerror}; another process serves it (a second daemon?) "
                            "or the address is wrong") from None


class InferenceServer:
    def __init__(self, config, bundle, runners: dict, backend: str, detector, endpoints: Endpoints,
                 new_analysis, max_batch: int, context: zmq.Context | None = None):
        self.config, self.bundle, self.runners, self.backend = config, bundle, runners, backend
        self.detector, self.endpoints, self.new_analysis = detector, endpoints, new_analysis
        self.context = context or zmq.Context.instance()
        self.threshold = config.inference.threshold if config.inference.threshold is not None else bundle.threshold
        self.alert_rules = AlertRules.from_config(config.alerts) if config.alerts.enabled else None
        ev = config.evidence
        self.evidence = EvidenceWriter(Path(ev.dir) if ev.dir else default_dir(), ev.max_bytes, ev.max_age_days,
                                       ev.queue) if ev.enabled and self.alert_rules else None
        # a window, the frames that arrive before its verdict, and the smoothing look-back
        self.evidence_frames = bundle.frames + 2 * config.window.stride + 8
        self.metrics = None
        self.last_status: Status | None = None
        if config.metrics.port:
            from daemon.outcomes.metrics import Metrics

            self.metrics = Metrics(lambda: self.last_status)
        self.max_batch = max_batch   # inference.max_batch, or the device's default (engines.backends)
        self.max_wait = config.inference.max_wait_ms / 1000
        # a frame is read only when there is room for its model work (max_backlog below), so its age
        # when read is its age when its turn comes, give or take one batch
        self.max_frame_age = config.inference.max_frame_age_s
        # a source that paused longer than this (an outage, a stall) restarts the stream's window
        fps = config.capture.fps or bundle.fps
        self.max_gap = config.window.max_gap_s or 2 * config.window.stride / fps
        # frames waiting for a model call, over all streams; past it we stop reading, the (small)
        # ZeroMQ queues fill, and capture processes drop (live) or wait (unpaced files) at the
        # sender: an overloaded daemon analyses fewer frames, not older ones
        self.max_backlog = self.max_batch
        self.streams: dict[str, StreamState] = {}
        self.invalid: dict[str, int] = {}
        self.bridges: dict[str, BridgeStats] = {}  # the bridges' own delivery counters, as they report them
        self.stages: dict[str, dict] = {}  # stage -> calls, items, seconds (model work, in the status)
        self.started = time.monotonic()
        self.stop = threading.Event()
        self._throttle = Throttle(10.0)  # one line per invalid-message reason, and for model errors, per 10 s
        self.authenticator: curve.Authenticator | None = None  # CURVE on tcp endpoints
        self.model_errors = 0

    # -- sockets ------------------------------------------------------------------------------
    def _bind(self) -> tuple[zmq.Socket, zmq.Socket]:
        e = self.config.endpoints
        keys = self._server_keys()
        pull = self.context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, e.recv_hwm)
        pull.setsockopt(zmq.LINGER, 0)
        curve.as_server(pull, keys.get(self.endpoints.frames))
        _bind(pull, self.endpoints.frames)
        pub = self.context.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, e.pub_hwm)
        pub.setsockopt(zmq.LINGER, 0)
        curve.as_server(pub, keys.get(self.endpoints.verdicts))
        _bind(pub, self.endpoints.verdicts)
        return pull, pub

    def _server_keys(self) -> dict:
        """Endpoint -> the server's CURVE keys, for the tcp endpoints that need them; starts the
        authenticator that admits only the allowed clients."""
        e = self.config.endpoints
        secured = [x for x in (self.endpoints.frames, self.endpoints.verdicts) if curve.needs_keys(x, e)]
        if not secured:
            return {}
        self.authenticator = curve.Authenticator(self.context, e.keys_dir).start()
        keys = curve.server_keys(e.keys_dir)
        return {x: keys for x in secured}

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        pull, pub = self._bind()
        self.pub = pub
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        log.info("serving", frames=self.endpoints.frames, verdicts=self.endpoints.verdicts, model=self.bundle.id,
                 backend=self.backend, trained=self.bundle.trained,
                 evidence=str(self.evidence.root) if self.evidence else None)
        self._publish_status(time.monotonic())  # status (and /metrics) from the start
        if self.metrics:
            self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
        notify.to_supervisor("READY=1")
        next_status = time.monotonic()
        last_ping = 0.0
        try:
            while not self.stop.is_set():
                timeout = 0 if self._has_work() else 100
                if self._room() and poller.poll(timeout):
                    self._receive(pull)
                self._fill_batches(pull, poller)
                self.process()
                self._announce_evidence()
                now = time.monotonic()
                if now >= next_status:
                    self._publish_status(now)
                    self._evict(now)
                    next_status = now + self.config.inference.status_interval
                if now - last_ping >= WATCHDOG_INTERVAL:
                    notify.to_supervisor("WATCHDOG=1")  # only from here: a hung model call stops the pings
                    last_ping = now
        finally:
            self._end_alerts()
            pull.close()
            pub.close()
            if self.authenticator:
                self.authenticator.close()
            if self.evidence:
                self.evidence.close(timeout=STOP_FLUSH_S)
        return 0

    def _end_alerts(self) -> None:
        """Stopping ends every open alert with its `end` message (bridges and the dashboard would
        otherwise show it open forever); its alert.json gets the end too."""
        for state in self.streams.values():
            if state.alerts and state.alerts.active:
                self._publish_alert(state.alerts.end(time.time()))

    def _fill_batches(self, pull: zmq.Socket, poller: zmq.Poller) -> None:
        """Waits up to max_wait for more frames while the pending per-frame model work is below a batch."""
        deadline = time.monotonic() + self.max_wait
        while len(self._pending_frames()) < self.max_batch and self._room() and time.monotonic() < deadline:
            if not poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            self._receive(pull)

    def _room(self) -> int:
        return max(0, self.max_backlog - sum(s.analysis.pending_work for s in self.streams.values()))

    def _receive(self, pull: zmq.Socket) -> None:
        """Takes messages until `_room()` frames arrived, the queue is empty or MAX_RECEIVE messages
        were read. Only frames use the room: a flood of invalid messages (or of counters) costs
        their decoding, never a valid capture's share of the turn."""
        room = self._room()
        for _ in range(MAX_RECEIVE):
            if room <= 0:
                return
            try:
                parts = pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = decode_capture(parts)
            except ProtocolError as e:
                self._count_invalid(e)
                continue
            room -= isinstance(message, Frame)
            self._dispatch(message)

    def _count_invalid(self, e: ProtocolError) -> None:
        self.invalid[e.reason] = self.invalid.get(e.reason, 0) + 1
        if self._throttle.ready(f"invalid:{e.reason}"):
            log.warning("invalid message dropped", reason=e.reason, detail=e.detail, count=self.invalid[e.reason])

    def _stream(self, name: str) -> StreamState:
        if name not in self.streams:
            self.streams[name] = StreamState(
                name, self.new_analysis(), alerts=AlertTracker(name, self.alert_rules) if self.alert_rules else None,
                frames=FrameStore(self.config.evidence.frame_width, self.evidence_frames) if self.evidence else None)
            log.info("new stream", stream=name)
        state = self.streams[name]
        state.last_seen = time.monotonic()
        return state

    def _dispatch(self, message) -> None:
        if isinstance(message, BridgeStats):
            self.bridges[message.bridge] = message
            return
        if isinstance(message, CaptureStats):
            self._stream(message.stream).capture = message
            return
        state = self._stream(message.stream)
        if isinstance(message, EndOfStream):
            state.analysis.end()
            log.info("end of stream", stream=state.name, last_seq=message.seq)
            return
        self._on_frame(state, message)

    def _on_frame(self, state: StreamState, frame: Frame) -> None:
        if frame.seq <= state.last_seq or state.analysis.ended:  # the capture process restarted
            log.info("stream restarted", stream=state.name, seq=frame.seq, previous=state.last_seq)
            self._new_session(state)
        elif frame.gap_s > self.max_gap and state.analysis.count:
            log.info("stream resumed after a gap; its window restarts", stream=state.name, gap_s=frame.gap_s)
            self._new_session(state)  # no verdict mixes frames from both sides of an outage
        state.last_seq = frame.seq
        state.last_frame = time.monotonic()
        state.frames_in += 1
        if self.max_frame_age and time.time() - frame.t_capture > self.max_frame_age:
            state.drop("stale")  # waited in queues (a paused or overloaded process): analyse the present
            return
        state.analysis.add_frame(frame.pixels, frame.seq, frame.t_capture, frame.t_mono)
        if state.frames is not None:
            state.frames.add(frame.seq, frame.pixels)

    def _new_session(self, state: StreamState) -> None:
        state.window_offset = state.windows
        state.analysis = self.new_analysis()

    # -- model work, batched across streams ---------------------------------------------------
    def _has_work(self) -> bool:
        return any(s.analysis.needs_detection() or s.analysis.needs_encoding() or s.analysis.needs_content()
                   or s.analysis.has_ready_window() for s in self.streams.values())

    def _pending_frames(self) -> list[tuple[StreamState, FrameRecord]]:
        items = [(s, r) for s in self.streams.values() for r in s.analysis.needs_encoding()]
        return sorted(items, key=lambda item: item[1].t_mono)

    def process(self) -> bool:
        """One round of every stage; True if any model ran."""
        worked = False
        for stage in (self._detect, self._decide, self._frames, self._contents, self._decide):  # decide: cheap, first
            if self.stop.is_set():  # a stop waits for one model call, not a whole round
                break
            worked |= stage()
        return worked

    def _guarded(self, stage: str, streams: list[StreamState], fn) -> bool:
        """Runs a stage; a failing model call drops the streams' windows, never the process."""
        start = time.perf_counter()
        try:
            fn()
            totals = self.stages.setdefault(stage, {"calls": 0, "items": 0, "seconds": 0.0})
            totals["calls"] += 1
            totals["items"] += len(streams)
            seconds = time.perf_counter() - start
            totals["seconds"] += seconds
            if self.metrics:
                self.metrics.model_seconds.labels(stage).observe(seconds)
            return True
        except Exception as e:
            involved = {s.name: s for s in streams}  # each stream once (states are not hashable)
            self.model_errors += 1
            if self._throttle.ready("model_error"):  # a model server that is down fails every call
                log.exception("model call failed; resetting the streams involved", stage=stage,
                              streams=sorted(involved), error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__,
                              failures=self.model_errors)
            for s in involved.values():
                s.drop("model_error")
                self._new_session(s)
            return False

    def _detect(self) -> bool:
        items = sorted(((s, r) for s in self.streams.values() for r in s.analysis.needs_detection()),
                       key=lambda item: item[1].t_mono)[: 2 * self.max_batch]
        if not items:
            return False

        def run():
            faces = self.detector.detect([r.pixels for _, r in items])
            for (s, r), found in zip(items, faces):
                s.analysis.set_detections(r, found)
        return self._guarded("detect", [s for s, _ in items], run)

    def _frames(self) -> bool:
        items = self._pending_frames()[: self.max_batch]
        if not items:
            return False
        part = self.bundle.frame_part
        runner = self.runners[part]

        def run():
            if runner.pixels is not None:  # 8-bit crops, normalised on the GPU
                outputs = runner.run_pixels(np.stack([s.analysis.encoder_pixels(r) for s, r in items]))
            else:
                outputs = runner.run(np.stack([s.analysis.encoder_input(r) for s, r in items]))
            for (s, r), output in zip(items, outputs):
                s.analysis.set_encoding(r, output)
                s.analysed += 1
        return self._guarded(part, [s for s, _ in items], run)

    def _contents(self) -> bool:
        items = [(s, key) for s in self.streams.values() for key in s.analysis.needs_content()][: self.max_batch]
        if not items:
            return False

        part = self.bundle.spec.content_part

        def run():
            feats = self.runners[part].run(np.stack([s.analysis.clip_input(k) for s, k in items]))
            for (s, k), f in zip(items, feats):
                s.analysis.set_content(k, f)
        return self._guarded(part, [s for s, _ in items], run)

    def _decide(self) -> bool:
        items = [(s, w) for s in self.streams.values() for w in s.analysis.ready_windows()][: self.max_batch]
        if not items:
            return False

        def run():
            decisions = self.bundle.spec.decide([w for _, w in items], self.runners, self.threshold)
            for (s, w), decision in zip(items, decisions):
                self._publish_verdict(s, w, decision)
                s.analysis.window_done(w)
                if s.analysis.finished and s.alerts:  # the source ended: so does its alert
                    self._publish_alert(s.alerts.end(w.t_last))
        return self._guarded("decision", [s for s, _ in items], run)

    # -- publishing ---------------------------------------------------------------------------
    def _publish_verdict(self, state: StreamState, w: WindowInputs, decision: Decision) -> None:
        score, label = decision.score, decision.label
        verdict = window_verdict(state.name, state.window_offset + w.window, w, decision, self.threshold, self.bundle,
                                 self.backend, latency_ms=max(0.0, (time.time() - w.t_last) * 1000))
        state.windows += 1
        state.labels[label] = state.labels.get(label, 0) + 1
        if self.metrics:
            self.metrics.verdict_latency.observe(verdict.latency_ms / 1000)
        self.pub.send_multipart(verdict.encode(), flags=zmq.NOBLOCK)  # PUB drops for slow subscribers
        log.info("verdict", stream=state.name, window=verdict.window, label=label,
                 score=None if score is None else round(score, 4), latency_ms=round(verdict.latency_ms))
        if state.alerts:
            alert = state.alerts.on_verdict(verdict)
            if alert is not None and alert.state == "start" and self.evidence:
                alert = self._keep_evidence(state, w, alert, score)
            self._publish_alert(alert)

    def _keep_evidence(self, state: StreamState, w: WindowInputs, alert: Alert, score: float) -> Alert:
        """Hands the opening window to the evidence writer (never waits); the alert names its files
        when the job was taken."""
        frames, boxes = [], []
        for i in w.indices:
            record = state.analysis.records.get(i)
            kept = state.frames.get(record.seq) if record else None
            if kept is not None:
                frames.append(kept[0])
                boxes.append(record.chosen.box * kept[1] if record.chosen else None)
        if not frames:
            return alert
        fps = self.config.capture.fps or self.bundle.fps
        if not self.evidence.submit(WindowEvidence(alert, frames, boxes, score, fps)):
            state.drop("evidence")
            if self._throttle.ready("evidence_dropped"):
                log.warning("evidence dropped: the writer's queue is full (a slow disk?)", stream=state.name,
                            alert_id=alert.alert_id, dropped=self.evidence.dropped)
        return alert  # its files are named once written (_announce_evidence)

    def _announce_evidence(self) -> None:
        """Publishes, for each alert whose files the writer has finished, an `update` naming them
        (the start went out before they existed); an alert that ended meanwhile keeps them in its
        folder, where the dashboard finds them."""
        while self.evidence and self.evidence.completed:
            written = self.evidence.completed.popleft()
            state = self.streams.get(written.stream)
            tracker = state.alerts if state else None
            if tracker and tracker.active and tracker.alert.alert_id == written.alert_id:
                self._publish_alert(tracker.evidence_written(relative_paths(written)))

    def _publish_alert(self, alert: Alert | None) -> None:
        if alert is None:
            return
        if alert.state != "start" and self.evidence and not self.evidence.submit(alert):  # appended to alert.json
            if self._throttle.ready("evidence_dropped"):
                log.warning("evidence dropped: an alert message was not added to its alert.json (queue full)",
                            stream=alert.stream, alert_id=alert.alert_id, dropped=self.evidence.dropped)
        self.pub.send_multipart(alert.encode(), flags=zmq.NOBLOCK)
        (log.warning if alert.state == "start" else log.info)(
            f"alert {alert.state}", stream=alert.stream, alert_id=alert.alert_id, windows=alert.windows,
            score=round(alert.score, 4), peak_score=round(alert.peak_score, 4), untrained=alert.untrained)

    def _publish_status(self, now: float) -> None:
        status = Status(t=time.time(), uptime_s=round(now - self.started, 3), model=self.bundle.id,
                        family=self.bundle.family,
                        backend=self.backend, streams={n: s.status(now) for n, s in self.streams.items()},
                        invalid=self._invalid(), stages={k: {**v, "seconds": round(v["seconds"], 6)} for k, v in self.stages.items()},
                        bridges={n: _bridge_status(b) for n, b in self.bridges.items()},
                        evidence=self.evidence.counters() if self.evidence else {})
        self.pub.send_multipart(status.encode(), flags=zmq.NOBLOCK)
        self.last_status = status  # what /metrics reports: the published status, never the loop's state

    def _invalid(self) -> dict[str, int]:
        """Invalid messages by reason, and connections CURVE refused (`unauthorized`)."""
        denied = self.authenticator.denied if self.authenticator else 0
        return {**self.invalid, "unauthorized": denied} if denied else dict(self.invalid)

    def _evict(self, now: float) -> None:
        """A stream silent for window.evict_after is closed first (its last frames make a final
        window, as an end of stream would), then forgotten once that window is published."""
        for name in [n for n, s in self.streams.items() if now - s.last_seen > self.config.window.evict_after]:
            state = self.streams[name]
            if not state.analysis.ended:
                log.info("stream silent; closing its last window", stream=name)
                state.analysis.end()
            if state.analysis.finished or now - state.last_seen > 2 * self.config.window.evict_after:
                log.info("stream silent; evicted from memory", stream=name)
                del self.streams[name]
                if state.alerts:
                    self._publish_alert(state.alerts.end(time.time()))
