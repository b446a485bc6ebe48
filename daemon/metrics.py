"""Prometheus metrics of the inference process (prometheus-client), served on `metrics.port`.

Counters that the daemon already keeps per stream (frames in, analysed, dropped, verdicts by
label, alerts, the capture's reconnects and stalls) are read at scrape time by a collector, so
there is one source of truth and a stream forgotten by the daemon drops out of the metrics with
it. Durations are histograms observed as they happen: model calls per stage and verdict latency.
"""
from __future__ import annotations

import time
from importlib import metadata

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from engines.logs import get_logger

log = get_logger()
MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)


def version() -> str:
    try:
        return metadata.version("dfwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


class StreamCollector:
    """Yields the per-stream families from the inference server's own state at each scrape."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        s = self.server
        now = time.monotonic()
        streams = list(s.streams.items())  # the loop thread may add or evict streams meanwhile
        received = CounterMetricFamily("dfwatch_frames_received", "Frames received from the capture process",
                                       labels=["stream"])
        analysed = CounterMetricFamily("dfwatch_frames_analysed", "Frames run through the per-frame model",
                                       labels=["stream"])
        dropped = CounterMetricFamily("dfwatch_frames_dropped", "Frames dropped, by reason (capture and inference)",
                                      labels=["stream", "reason"])
        verdicts = CounterMetricFamily("dfwatch_verdicts", "Verdicts published, by label", labels=["stream", "label"])
        alerts = CounterMetricFamily("dfwatch_alerts", "Alerts started", labels=["stream"])
        active = GaugeMetricFamily("dfwatch_alert_active", "1 while the stream has an open alert", labels=["stream"])
        age = GaugeMetricFamily("dfwatch_stream_last_frame_age_seconds", "Seconds since the stream's last frame",
                                labels=["stream"])
        reconnects = CounterMetricFamily("dfwatch_capture_reconnects", "Source reopened by the capture process",
                                         labels=["stream"])
        stalls = CounterMetricFamily("dfwatch_capture_stalls", "Stalls detected by the capture process",
                                     labels=["stream"])
        for name, state in streams:
            status = state.status(now)
            received.add_metric([name], state.frames_in)
            analysed.add_metric([name], state.analysed)
            for reason, n in sorted(status["dropped"].items()):
                dropped.add_metric([name, reason], n)
            for label, n in sorted(state.labels.items()):
                verdicts.add_metric([name, label], n)
            alerts.add_metric([name], state.alerts.started if state.alerts else 0)
            active.add_metric([name], 1.0 if state.alerts and state.alerts.active else 0.0)
            age.add_metric([name], status["last_frame_age_s"])
            reconnects.add_metric([name], status["reconnects"])
            stalls.add_metric([name], status["stalls"])
        invalid = CounterMetricFamily("dfwatch_invalid_messages", "Rejected capture messages, by reason",
                                      labels=["reason"])
        for reason, n in sorted(dict(s.invalid).items()):
            invalid.add_metric([reason], n)
        info = GaugeMetricFamily("dfwatch_build_info", "dfwatch version and the model it serves",
                                 labels=["version", "model", "backend", "family"])
        info.add_metric([version(), s.bundle.id, s.backend, s.bundle.family], 1.0)
        yield from (received, analysed, dropped, verdicts, alerts, active, age, reconnects, stalls, invalid, info)


class Metrics:
    """The inference process's registry: the stream collector and the duration histograms."""

    def __init__(self, server):
        self.registry = CollectorRegistry()
        self.registry.register(StreamCollector(server))
        self.model_seconds = Histogram("dfwatch_model_seconds", "Duration of one batched model call, by stage",
                                       ["part"], buckets=MODEL_BUCKETS, registry=self.registry)
        self.verdict_latency = Histogram("dfwatch_verdict_latency_seconds",
                                         "Capture of a window's last frame to its verdict", buckets=LATENCY_BUCKETS,
                                         registry=self.registry)

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
