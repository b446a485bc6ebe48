"""What the inference process says: verdicts, alerts per (stream, track), and their evidence.

`Publisher` turns a decided window into a `Verdict` on the PUB socket, feeds it to its track's
alert rule (daemon/outcomes/alerts.py) and hands an opening window to the evidence writer, which
never blocks; a track's end ends its alert. Nothing here waits on a disk or a network.
"""
from __future__ import annotations

import time

import numpy as np
import zmq

from daemon.outcomes.evidence import EvidenceWriter, WindowEvidence, relative_paths
from daemon.service.streams import StreamState
from daemon.wire.protocol import THUMBNAIL_PREFIX, Alert, Verdict
from engines.logs import Throttle, get_logger
from engines.pipeline.analysis import WindowInputs
from engines.pipeline.decision import Decision

log = get_logger()


def window_verdict(stream: str, window: int, w: WindowInputs, decision: Decision, threshold: float, bundle,
                   backend: str, latency_ms: float, calibrated: bool = False,
                   false_alerts_per_day: float | None = None) -> Verdict:
    """The verdict message of a decided window (the daemon publishes it; `dfwatch scan` feeds it to
    the alert rule)."""
    return Verdict(stream=stream, window=window, seq_first=w.seq_first, seq_last=w.seq_last, t_first=w.t_first,
                   t_last=w.t_last, score=decision.score, label=decision.label, threshold=threshold, faces=w.faces,
                   frames=w.frames, model=bundle.id, backend=backend, latency_ms=latency_ms,
                   untrained=not bundle.trained, family=bundle.family, fake_frames=decision.fake_frames,
                   track=w.track, box=w.box, thumbnail=_jpeg_url(w.thumbnail), calibrated=calibrated,
                   decisive=decision.decisive, false_alerts_per_day=false_alerts_per_day)


def _jpeg_url(image: np.ndarray | None) -> str | None:
    """A small picture as a data: URL (once per track: its first verdict)."""
    if image is None:
        return None
    import base64

    import cv2

    return THUMBNAIL_PREFIX + base64.b64encode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1]).decode()


class Publisher:
    def __init__(self, pub: zmq.Socket, bundle, backend: str, threshold: float, fps: float,
                 evidence: EvidenceWriter | None, metrics=None, throttle: Throttle | None = None,
                 calibrated: bool = False, false_alerts_per_day: float | None = None):
        self.pub, self.bundle, self.backend, self.threshold, self.fps = pub, bundle, backend, threshold, fps
        self.calibrated, self.false_alerts_per_day = calibrated, false_alerts_per_day
        self.evidence, self.metrics = evidence, metrics
        self._throttle = throttle or Throttle(10.0)

    def verdict(self, state: StreamState, w: WindowInputs, decision: Decision) -> None:
        score, label = decision.score, decision.label
        verdict = window_verdict(state.name, state.windows, w, decision, self.threshold, self.bundle, self.backend,
                                 latency_ms=max(0.0, (time.time() - w.t_last) * 1000), calibrated=self.calibrated,
                                 false_alerts_per_day=self.false_alerts_per_day)
        state.windows += 1
        state.labels[label] = state.labels.get(label, 0) + 1
        if self.metrics:
            self.metrics.verdict_latency.observe(verdict.latency_ms / 1000)
            if score is not None:  # a camera whose scores drift shows it here (per stream: bounded labels)
                self.metrics.window_score.labels(state.name).observe(score)
        self.pub.send_multipart(verdict.encode(), flags=zmq.NOBLOCK)  # PUB drops for slow subscribers
        # debug: a camera makes a verdict a second per face; they reach people through the PUB socket,
        # watch, the dashboard and metrics, and the journal keeps alerts (warning) and state changes
        log.debug("verdict", stream=state.name, track=w.track, window=verdict.window, label=label,
                  score=None if score is None else round(score, 4), latency_ms=round(verdict.latency_ms))
        tracker = state.tracker(w.track) if label != "no_face" else None
        if tracker is not None:
            alert = tracker.on_verdict(verdict)
            if alert is not None and alert.state == "start" and self.evidence:
                self._keep_evidence(state, w, alert, score)
            self.alert(alert)

    def track_ended(self, state: StreamState, track: int | None, t: float) -> None:
        self.alert(state.forget_track(track, t))

    def end_all(self, state: StreamState, t: float) -> None:
        """Every open alert of the stream ends (a stop, an eviction, a new session's new tracks)."""
        for track in list(state.alerts):
            self.track_ended(state, track, t)

    def _keep_evidence(self, state: StreamState, w: WindowInputs, alert: Alert, score: float) -> None:
        """Hands the opening window to the evidence writer (never waits); the alert names its files
        once they are written (`announce_evidence`)."""
        frames, boxes = [], []
        for seq, box in zip(w.seqs, w.boxes if w.boxes is not None else [None] * len(w.seqs)):
            kept = state.frames.get(seq) if state.frames else None
            if kept is not None:
                frames.append(kept[0])
                boxes.append(None if box is None or np.isnan(box).any() else box * kept[1])
        if not frames:
            return
        if not self.evidence.submit(WindowEvidence(alert, frames, boxes, score, self.fps)):
            state.drop("evidence")
            if self._throttle.ready("evidence_dropped"):
                log.warning("evidence dropped: the writer's queue is full (a slow disk?)", stream=state.name,
                            alert_id=alert.alert_id, dropped=self.evidence.dropped)

    def announce_evidence(self, streams: dict[str, StreamState]) -> None:
        """Publishes, for each alert whose files the writer has finished, an `update` naming them
        (the start went out before they existed); an alert that ended meanwhile keeps them in its
        folder, where the dashboard finds them."""
        while self.evidence and self.evidence.completed:
            written = self.evidence.completed.popleft()
            state = streams.get(written.stream)
            tracker = state.alerts.get(written.track) if state else None
            if tracker and tracker.active and tracker.alert.alert_id == written.alert_id:
                self.alert(tracker.evidence_written(relative_paths(written)))

    def alert(self, alert: Alert | None) -> None:
        if alert is None:
            return
        if alert.state != "start" and self.evidence and not self.evidence.submit(alert):  # appended to alert.json
            if self._throttle.ready("evidence_dropped"):
                log.warning("evidence dropped: an alert message was not added to its alert.json (queue full)",
                            stream=alert.stream, alert_id=alert.alert_id, dropped=self.evidence.dropped)
        self.pub.send_multipart(alert.encode(), flags=zmq.NOBLOCK)
        (log.warning if alert.state == "start" else log.info)(
            f"alert {alert.state}", stream=alert.stream, track=alert.track, alert_id=alert.alert_id,
            windows=alert.windows, score=round(alert.score, 4), peak_score=round(alert.peak_score, 4),
            untrained=alert.untrained)
