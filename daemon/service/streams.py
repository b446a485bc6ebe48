"""What the inference process knows of one stream: its analysis, counters, alerts and recent frames.

A stream's `StreamState` outlives its analysis: a restarted capture or a failed model call starts
a new session (a new `StreamAnalysis`, its track ids going on from the last), while the counters,
the evidence frames and the one-face mode's alert carry on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.outcomes.evidence import FrameStore
from daemon.wire.protocol import Alert, CaptureStats, StreamStatus
from engines.pipeline.analysis import StreamAnalysis


@dataclass
class StreamState:
    name: str
    analysis: StreamAnalysis
    rules: AlertRules | None = None          # None: alerts are off
    frames_in: int = 0
    analysed: int = 0                        # frames analysed by earlier sessions
    windows: int = 0                         # verdicts published: the next verdict's window id
    last_seq: int = -1
    last_seen: float = field(default_factory=time.monotonic)     # any message (eviction)
    last_frame: float = field(default_factory=time.monotonic)    # frames only (status)
    dropped: dict[str, int] = field(default_factory=dict)
    capture: CaptureStats | None = None
    alerts: dict[int | None, AlertTracker] = field(default_factory=dict)  # track -> its alert state
    frames: FrameStore | None = None         # recent frames for evidence (None: no evidence kept)
    labels: dict[str, int] = field(default_factory=dict)   # verdicts published, by label
    alerts_started: int = 0                  # of trackers already forgotten
    faces_dropped: int = 0                   # of analyses already replaced

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def tracker(self, track: int | None) -> AlertTracker | None:
        """The alert state of one face track (made on its first verdict), None with alerts off."""
        if self.rules is None:
            return None
        if track not in self.alerts:
            self.alerts[track] = AlertTracker(self.name, self.rules, track)
        return self.alerts[track]

    def forget_track(self, track: int | None, t: float) -> Alert | None:
        """The track ended: its alert's `end` (if one is open); its state is forgotten."""
        tracker = self.alerts.pop(track, None)
        if tracker is None:
            return None
        self.alerts_started += tracker.started
        return tracker.end(t)

    def open_alerts(self) -> list[Alert]:
        return [t.alert for t in self.alerts.values() if t.active]

    def status(self, now: float) -> StreamStatus:
        c = self.capture
        dropped = dict(c.dropped) if c else {}
        faces = self.faces_dropped + self.analysis.faces_dropped
        for reason, n in {**self.dropped, **({"faces": faces} if faces else {})}.items():
            dropped[reason] = dropped.get(reason, 0) + n
        ended = self.analysis.ended
        open_alerts = sorted(self.open_alerts(), key=lambda a: a.t_start)
        return StreamStatus(frames_in=self.frames_in, analysed=self.analysed + self.analysis.tracked, windows=self.windows, dropped=dropped,
                            reconnects=c.reconnects if c else 0, stalls=c.stalls if c else 0,
                            last_frame_age_s=round(now - self.last_frame, 3), queue_depth=self.analysis.backlog,
                            state="ended" if ended else (c.state if c else "running"),
                            alert=open_alerts[-1].alert_id if open_alerts else None,
                            detail=c.detail if c and not ended else "", verdicts=dict(self.labels),
                            alerts_started=self.alerts_started + sum(t.started for t in self.alerts.values()),
                            tracks=self.analysis.live_tracks, open_alerts=[a.alert_id for a in open_alerts])
