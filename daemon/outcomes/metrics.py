"""Prometheus metrics of the inference process (prometheus-client), served on `metrics.port`.

Everything the daemon counts per stream (frames in, analysed, dropped, verdicts by label, alerts,
the capture's reconnects, stalls and state), per bridge (delivered, dropped, retries, queue) and
of the evidence store (written, dropped, failed, bytes) is read at scrape time from the status
message the inference loop last published (`latest()`): one source of truth, no reading of
the loop's state from the HTTP thread, and a stream the daemon forgot drops out of the metrics
with it. Durations are histograms observed as they happen (model calls per stage, verdict
latency); the process collector adds `process_resident_memory_bytes` and friends (RSS against
the unit's MemoryMax). No series has a per-track or per-alert label: cardinality stays bounded.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from importlib import metadata

from prometheus_client import (CollectorRegistry, Histogram, ProcessCollector, disable_created_metrics,
                               start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from daemon.wire.protocol import REASONS, Status
from engines.logs import get_logger

log = get_logger()
MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
# every state a stream can report (capture states and `ended`): one series each, 1 for the current
STREAM_STATES = ("connecting", "waiting", "running", "backoff", "blocked", "ended")
# drop and rejection reasons reported as 0 until they happen, so that increase() sees the first one
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)
DROP_REASONS = ("queue_full", "stale", "decode_error", "model_error", "evidence", "faces")


def version() -> str:
    try:
        return metadata.version("dfwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


class StatusCollector:
    """Yields the families from the last published Status at each scrape; `latest` returns it
    (an immutable message the loop replaces whole, so the HTTP thread never sees a half update)."""

    def __init__(self, latest: Callable[[], Status | None]):
        self.latest = latest

    def collect(self):
        status = self.latest()
        if status is None:
            return
        yield from self._streams(status)
        yield from self._bridges(status)
        yield from self._evidence(status)
        invalid = _counter("dfwatch_invalid_messages", "Rejected capture messages, by reason", ["reason"])
        for reason, n in sorted({**dict.fromkeys(REASONS + ("unauthorized",), 0), **status.invalid}.items()):
            invalid.add_metric([reason], n)
        info = GaugeMetricFamily("dfwatch_build_info", "dfwatch version and the model it serves",
                                 labels=["version", "model", "backend", "family"])
        info.add_metric([version(), status.model, status.backend, status.family], 1.0)
        age = GaugeMetricFamily("dfwatch_status_age_seconds", "Seconds since the status these values come from")
        age.add_metric([], max(0.0, time.time() - status.t))
        loop = GaugeMetricFamily("dfwatch_loop_age_seconds", "Seconds since the inference loop last finished a turn "
                                 "(a model call in progress, or a stuck loop when it keeps growing)")
        loop.add_metric([], status.loop_age_s)
        yield from (invalid, info, age, loop)

    @staticmethod
    def _streams(status):
        received = _counter("dfwatch_frames_received", "Frames received from the capture process", ["stream"])
        analysed = _counter("dfwatch_frames_analysed", "Frames analysed: faces found and handed to their tracks", ["stream"])
        dropped = _counter("dfwatch_frames_dropped", "Frames dropped, by reason (capture and inference)",
                           ["stream", "reason"])
        verdicts = _counter("dfwatch_verdicts", "Verdicts published, by label", ["stream", "label"])
        alerts = _counter("dfwatch_alerts", "Alerts started", ["stream"])
        active = GaugeMetricFamily("dfwatch_alert_active", "1 while the stream has an open alert (any face track)",
                                   labels=["stream"])
        open_alerts = GaugeMetricFamily("dfwatch_alerts_open", "Open alerts of the stream: one per face track that "
                                        "looks fake", labels=["stream"])
        tracks = GaugeMetricFamily("dfwatch_tracks", "Faces the stream follows now (face tracks; per stream, "
                                   "never per track: track ids are unbounded)", labels=["stream"])
        age = GaugeMetricFamily("dfwatch_stream_last_frame_age_seconds", "Seconds since the stream's last frame",
                                labels=["stream"])
        reconnects = _counter("dfwatch_capture_reconnects", "Source reopened by the capture process", ["stream"])
        stalls = _counter("dfwatch_capture_stalls", "Stalls detected by the capture process", ["stream"])
        state = GaugeMetricFamily("dfwatch_stream_state", "1 for the stream's current state, 0 for the others",
                                  labels=["stream", "state"])
        for name, st in sorted(status.streams.items()):
            received.add_metric([name], st.frames_in)
            analysed.add_metric([name], st.analysed)
            for reason, n in sorted({**dict.fromkeys(DROP_REASONS, 0), **st.dropped}.items()):
                dropped.add_metric([name, reason], n)
            for label, n in sorted(st.verdicts.items()):
                verdicts.add_metric([name, label], n)
            alerts.add_metric([name], st.alerts_started)
            active.add_metric([name], 1.0 if st.alert else 0.0)
            open_alerts.add_metric([name], len(st.open_alerts))
            tracks.add_metric([name], st.tracks)
            age.add_metric([name], st.last_frame_age_s)
            reconnects.add_metric([name], st.reconnects)
            stalls.add_metric([name], st.stalls)
            for s in STREAM_STATES:
                state.add_metric([name, s], 1.0 if st.state == s else 0.0)
        yield from (received, analysed, dropped, verdicts, alerts, active, open_alerts, tracks, age, reconnects, stalls,
                    state)

    @staticmethod
    def _bridges(status):
        messages = _counter("dfwatch_bridge_messages", "Bridge messages by outcome (delivered, dropped, rejected)",
                            ["bridge", "type", "outcome"])
        retries = _counter("dfwatch_bridge_retries", "Bridge delivery retries", ["bridge", "type"])
        queue = GaugeMetricFamily("dfwatch_bridge_queue", "Bridge messages waiting for the receiver",
                                  labels=["bridge", "type"])
        connected = GaugeMetricFamily("dfwatch_bridge_connected", "1 while the bridge reaches its receiver",
                                      labels=["bridge", "type"])
        for name, b in sorted(status.bridges.items()):
            kind = b.get("type", "?")
            for outcome in ("delivered", "dropped", "rejected"):
                messages.add_metric([name, kind, outcome], b.get(outcome, 0))
            retries.add_metric([name, kind], b.get("retries", 0))
            queue.add_metric([name, kind], b.get("queue", 0))
            connected.add_metric([name, kind], 1.0 if b.get("connected") else 0.0)
        yield from (messages, retries, queue, connected)

    @staticmethod
    def _evidence(status):
        if not status.evidence:
            return
        e = status.evidence
        jobs = _counter("dfwatch_evidence_alerts", "Alerts' evidence by outcome (written; dropped: queue full; "
                                                   "failed: the disk refused)", ["outcome"])
        for outcome in ("written", "dropped", "failed"):
            jobs.add_metric([outcome], e.get(outcome, 0))
        size = GaugeMetricFamily("dfwatch_evidence_bytes", "Bytes the evidence store holds")
        size.add_metric([], e.get("bytes", 0))
        queued = GaugeMetricFamily("dfwatch_evidence_queue", "Evidence jobs waiting for the writer")
        queued.add_metric([], e.get("queued", 0))
        yield from (jobs, size, queued)


class Metrics:
    """The inference process's registry: the status collector, the process collector and the
    duration histograms."""

    def __init__(self, latest: Callable[[], Status | None]):
        disable_created_metrics()  # `_created` series are timestamps, exported as gauges: noise on every scrape
        self.registry = CollectorRegistry()
        self.registry.register(StatusCollector(latest))
        ProcessCollector(registry=self.registry)
        self.model_seconds = Histogram("dfwatch_model_seconds", "Duration of one batched model call, by stage",
                                       ["part"], buckets=MODEL_BUCKETS, registry=self.registry)
        self.verdict_latency = Histogram("dfwatch_verdict_latency_seconds",
                                         "Capture of a window's last frame to its verdict", buckets=LATENCY_BUCKETS,
                                         registry=self.registry)
        # per stream (streams are few; never per track): a camera whose score distribution moves
        # (new lighting, a new encoder, a new kind of fake) shows it before its alerts do
        self.window_score = Histogram("dfwatch_window_score", "Window scores (P(fake)) per stream",
                                      ["stream"], buckets=SCORE_BUCKETS, registry=self.registry)

    def forget(self, stream: str) -> None:
        """A stream the daemon forgot leaves the histograms too."""
        try:
            self.window_score.remove(stream)
        except KeyError:
            pass

    def serve(self, host: str, port: int) -> bool:
        """Starts the HTTP endpoint (a daemon thread); a port in use is logged, never fatal."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            log.error("metrics endpoint not started; set metrics.port to a free port (0: off)", host=host, port=port,
                      error=str(e))
            return False
        log.info("metrics", url=f"http://{host}:{port}/metrics")
        return True
