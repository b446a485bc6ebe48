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
from pathlib import Path

import zmq

from daemon.outcomes.alerts import AlertRules
from daemon.outcomes.evidence import Downscaler, EvidenceWriter, FrameStore, default_dir
from daemon.service import notify
from daemon.service.broadcaster import Broadcaster
from daemon.service.publisher import Publisher, window_verdict
from daemon.service.stages import ModelStages
from daemon.service.streams import StreamState
from daemon.wire import curve
from daemon.wire.endpoints import Endpoints, EndpointsBusy
from daemon.wire.protocol import (BridgeStats, CaptureStats, EndOfStream, Frame, ProtocolError, Status,
                                  decode_capture)
from engines.logs import Throttle, get_logger
from engines.operating_points import calibration_bound, operating_threshold
from engines.pipeline.analysis import TrackEnd
from engines.pipeline.scheduler import Decided, Scheduler

__all__ = ["InferenceServer", "window_verdict"]

log = get_logger()
MAX_RECEIVE = 1024         # messages read per loop turn at most (frames: as many as there is room for)
WATCHDOG_INTERVAL = 1.0    # seconds between WATCHDOG=1 pings to the supervisor
WEAK_CALIBRATION_PER_DAY = 10.0   # a calibration vouching for more false alerts a camera-day is said to be weak


def stop_flush_s(stop_timeout: float) -> float:
    """How long evidence still queued at a stop may take: half the producers' share of the
    supervisor's stop budget (supervisor.stop_timeout, 5 s: 1.5 s), so that the inference
    process is gone before the supervisor would kill it."""
    return min(2.0, max(0.2, (stop_timeout - 0.5) * 2 / 3 / 2))


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
    """The loop and its admission: sockets, reading frames as far as there is room for their work,
    sessions, status and eviction. The model work is `ModelStages` (daemon/service/stages.py),
    what is said about it `Publisher` (daemon/service/publisher.py), one stream's state
    `StreamState` (daemon/service/streams.py)."""

    def __init__(self, config, bundle, runners: dict, backend: str, detector, endpoints: Endpoints,
                 new_analysis, max_batch: int, context: zmq.Context | None = None):
        """`new_analysis(work=, name=, first_track=)`: a stream's `StreamAnalysis` on the shared queues."""
        self.config, self.bundle, self.runners, self.backend = config, bundle, runners, backend
        self.detector, self.endpoints, self.new_analysis = detector, endpoints, new_analysis
        self.context = context or zmq.Context.instance()
        self.threshold, self.calibrated = operating_threshold(config, bundle)
        self.calibration_bound = calibration_bound(config, bundle)   # what the calibration vouches for
        if self.calibration_bound is not None and self.calibration_bound > WEAK_CALIBRATION_PER_DAY:
            log.warning(f"the site calibration vouches for at most {self.calibration_bound:.4g} false alerts per "
                        "camera-day (95 % bound): its footage is too short for a tighter one; record more real "
                        "footage and run 'dfwatch calibrate' again", calibration=config.inference.calibration)
        self.alert_rules = AlertRules.from_config(config.alerts) if config.alerts.enabled else None
        ev = config.evidence
        self.evidence = EvidenceWriter(Path(ev.dir) if ev.dir else default_dir(), ev.max_bytes, ev.max_age_days,
                                       ev.queue) if ev.enabled and self.alert_rules else None
        # a window, the frames that arrive before its verdict, and the smoothing look-back
        self.evidence_frames = bundle.frames + 2 * config.window.stride + 8
        self.downscaler = Downscaler() if self.evidence else None   # evidence frames shrunk off the loop
        self.metrics = None
        self.last_status: Status | None = None
        self.broadcaster: Broadcaster | None = None   # owns the PUB socket once it is bound
        if config.metrics.port:
            from daemon.outcomes.metrics import Metrics

            self.metrics = Metrics(lambda: self.broadcaster.current() if self.broadcaster else self.last_status)
        self.max_batch = max_batch   # inference.max_batch, or the device's default (engines.backends)
        self.max_wait = config.inference.max_wait_ms / 1000
        # a frame is read only when there is room for its model work (max_backlog below), so its age
        # when read is its age when its turn comes, give or take one batch
        self.max_frame_age = config.inference.max_frame_age_s
        # a source that paused longer than this (an outage, a stall) restarts the stream's window
        self.fps = config.capture.fps or bundle.fps
        self.max_gap = config.window.max_gap_s or 2 * config.window.stride / self.fps
        # items waiting for a model call, over all streams; past it we stop reading, the (small)
        # ZeroMQ queues fill, and capture processes drop (live) or wait (unpaced files) at the
        # sender: an overloaded daemon analyses fewer frames, not older ones
        self.max_backlog = self.max_batch
        self.streams: dict[str, StreamState] = {}
        self.invalid: dict[str, int] = {}
        self.bridges: dict[str, BridgeStats] = {}  # the bridges' own delivery counters, as they report them
        self.started = time.monotonic()
        self.stop = threading.Event()
        self._throttle = Throttle(10.0)  # one line per invalid-message reason, and for model errors, per 10 s
        self.authenticator: curve.Authenticator | None = None  # CURVE on tcp endpoints
        family = bundle.spec
        scheduler = Scheduler(detector, runners, family.frame_part, family.content_part,
                              lambda windows: family.decide(windows, runners, self.threshold))
        self.work = scheduler.work
        self.stages = ModelStages(scheduler, max_batch,
                                  {"encode": family.frame_part, "content": family.content_part or "content",
                                   "decide": "decision"}, self._reset_streams, self.metrics, self._throttle)
        self.publisher: Publisher | None = None   # once the PUB socket is bound

    @property
    def model_errors(self) -> int:
        return self.stages.errors

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
        self.broadcaster = Broadcaster(self.context, pub, self.config.inference.status_interval)
        self.publisher = Publisher(self.broadcaster, self.bundle, self.backend, self.threshold, self.fps, self.evidence,
                                   self.metrics, self._throttle, self.calibrated, self.calibration_bound)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        log.info("serving", frames=self.endpoints.frames, verdicts=self.endpoints.verdicts, model=self.bundle.id,
                 backend=self.backend, trained=self.bundle.trained, threshold=self.threshold, calibrated=self.calibrated,
                 evidence=str(self.evidence.root) if self.evidence else None)
        self._publish_status(time.monotonic())  # status (and /metrics) from the start
        if self.metrics:
            self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
        notify.to_supervisor("READY=1")
        next_status = time.monotonic()
        last_ping = 0.0
        try:
            while not self.stop.is_set():
                timeout = 0 if self.work.busy() else 100
                if self._room() and poller.poll(timeout):
                    self._receive(pull)
                self._fill_batches(pull, poller)
                self.process()
                self.publisher.announce_evidence(self.streams)
                now = time.monotonic()
                if now >= next_status:
                    self._publish_status(now)
                    self._evict(now)
                    next_status = now + self.config.inference.status_interval
                if now - last_ping >= WATCHDOG_INTERVAL:
                    notify.to_supervisor("WATCHDOG=1")  # only from here: a hung model call stops the pings
                    last_ping = now
                self.broadcaster.turned()
        finally:
            self._stop_serving(pull)
        return 0

    def _stop_serving(self, pull: zmq.Socket) -> None:
        """Within the supervisor's stop budget: every open alert ends (its message out first), the
        evidence still queued gets `stop_flush_s`, a last status says `stopping`; then the caller
        leaves without the interpreter's teardown (`dfwatch infer` exits at once)."""
        self._end_alerts()
        pull.close()
        if self.authenticator:
            self.authenticator.close()
        if self.evidence:
            self.evidence.close(timeout=stop_flush_s(self.config.supervisor.stop_timeout))
            self.downscaler.close()
        self.broadcaster.close(stopping=self._status(time.monotonic()))

    def _end_alerts(self) -> None:
        """Stopping ends every open alert with its `end` message (bridges and the dashboard would
        otherwise show it open forever); its alert.json gets the end too."""
        for state in self.streams.values():
            self.publisher.end_all(state, time.time())

    def _fill_batches(self, pull: zmq.Socket, poller: zmq.Poller) -> None:
        """Waits up to max_wait for more frames while the pending per-frame model work is below a batch."""
        deadline = time.monotonic() + self.max_wait
        while self._room() and time.monotonic() < deadline:   # room left: encode's backlog is below a batch
            if not poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            self._receive(pull)

    def _room(self) -> int:
        return max(0, self.max_backlog - self.work.waiting["detect"] - self.work.waiting["encode"])

    def _receive(self, pull: zmq.Socket) -> None:
        """Takes messages until `_room()` frames arrived, the queue is empty or MAX_RECEIVE messages
        were read. Only frames use the room: a flood of invalid messages (or of counters) costs
        their decoding, never a valid capture's share of the turn."""
        start, room = time.perf_counter(), self._room()
        frames = room
        for _ in range(MAX_RECEIVE):
            if room <= 0:
                break
            try:
                parts = pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                message = decode_capture(parts)
            except ProtocolError as e:
                self._count_invalid(e)
                continue
            room -= isinstance(message, Frame)
            self._dispatch(message)
        if frames > room:
            self.stages.account("receive", frames - room, time.perf_counter() - start)

    def _count_invalid(self, e: ProtocolError) -> None:
        self.invalid[e.reason] = self.invalid.get(e.reason, 0) + 1
        if self._throttle.ready(f"invalid:{e.reason}"):
            log.warning("invalid message dropped", reason=e.reason, detail=e.detail, count=self.invalid[e.reason])

    def _stream(self, name: str) -> StreamState:
        if name not in self.streams:
            self.streams[name] = StreamState(
                name, self.new_analysis(work=self.work, name=name, first_track=1), rules=self.alert_rules,
                frames=FrameStore(self.config.evidence.frame_width, self.evidence_frames, self.downscaler)
                if self.evidence else None)
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
        """A new analysis for the stream; the old one's queued work is skipped. Its face tracks
        end with it (their alerts too), and the new tracks' ids go on from the last."""
        old = state.analysis
        old.discard()
        state.analysed += old.tracked
        state.faces_dropped += old.faces_dropped
        if old.tracker is not None:
            self.publisher.end_all(state, time.time())
        state.analysis = self.new_analysis(work=self.work, name=state.name,
                                           first_track=old.tracker.next_id if old.tracker else 1)

    def _reset_streams(self, names: list[str]) -> None:
        """A model call failed: the streams in its batch lose their windows and start a new session."""
        for name in names:
            state = self.streams.get(name)
            if state is not None:
                state.drop("model_error")
                self._new_session(state)

    # -- model work, batched across streams and tracks ----------------------------------------
    def process(self) -> bool:
        """One round of every stage (`ModelStages.round`); True if any model ran."""
        return self.stages.round(self._publish, self.stop.is_set)

    def _publish(self, decided: list[Decided]) -> None:
        for d in decided:
            state = self.streams.get(d.item.owner.name)
            if state is None or state.analysis is not d.item.owner:
                continue  # the stream was evicted or restarted meanwhile
            if isinstance(d.item, TrackEnd):
                self.publisher.track_ended(state, d.item.track, d.item.t_last)
            else:
                self.publisher.verdict(state, d.item, d.decision)

    # -- status -------------------------------------------------------------------------------
    def _status(self, now: float) -> Status:
        return Status(t=time.time(), uptime_s=round(now - self.started, 3), model=self.bundle.id,
                      family=self.bundle.family, backend=self.backend,
                      streams={n: s.status(now) for n, s in self.streams.items()}, invalid=self._invalid(),
                      stages={k: {**v, "seconds": round(v["seconds"], 6)} for k, v in self.stages.stats.items()},
                      bridges={n: _bridge_status(b) for n, b in self.bridges.items()},
                      evidence=self.evidence.counters() if self.evidence else {})

    def _publish_status(self, now: float) -> None:
        status = self._status(now)
        self.broadcaster.status(status)   # repeated by its thread while a model call takes long
        self.last_status = status  # what /metrics reports: the published status, never the loop's state

    def _invalid(self) -> dict[str, int]:
        """Invalid messages by reason, and connections CURVE refused (`unauthorized`)."""
        denied = self.authenticator.denied if self.authenticator else 0
        return {**self.invalid, "unauthorized": denied} if denied else dict(self.invalid)

    def _evict(self, now: float) -> None:
        """A stream silent for window.evict_after is closed first (its last frames make final
        windows, as an end of stream would), then forgotten once those are published."""
        for name in [n for n, s in self.streams.items() if now - s.last_seen > self.config.window.evict_after]:
            state = self.streams[name]
            if not state.analysis.ended:
                log.info("stream silent; closing its last window", stream=name)
                state.analysis.end()
            if state.analysis.finished or now - state.last_seen > 2 * self.config.window.evict_after:
                log.info("stream silent; evicted from memory", stream=name)
                del self.streams[name]
                state.analysis.discard()
                self.publisher.end_all(state, time.time())
                if self.metrics:
                    self.metrics.forget(name)
