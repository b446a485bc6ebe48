"""Alert events: one face track's verdicts turned into start / update / end messages an operator can act on.

A per-window score is a firehose; an alert says "the person on the left of stream door looks fake
since 14:02". One `AlertTracker` per (stream, track): every face its own alert. The rule
(configuration section `alerts`): an alert opens when `open_after` of the last `open_of` windows
with a face were fake, sends an `update` every `update_every` windows while open, and ends after
`close_after` consecutive real windows, or when the stream ends or is forgotten. After an end
no new alert opens on that stream's track for `cooldown_s` seconds. `no_face` windows neither open nor
close an alert: a person looking away is not evidence either way.

`AlertTracker` is a plain state machine fed verdict by verdict: it opens no socket and reads no
clock (times come from the verdicts), so every rule is unit-tested without a daemon.
"""
from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from daemon.wire.protocol import Alert, Verdict


@dataclass(frozen=True)
class AlertRules:
    open_after: int = 2      # fake windows ...
    open_of: int = 3         # ... among the last this many windows with a face open an alert
    close_after: int = 3     # consecutive real windows that end it
    cooldown_s: float = 30.0  # no new alert on the stream this long after an end
    update_every: int = 4    # windows with a face between `update` messages

    @classmethod
    def from_config(cls, alerts) -> "AlertRules":
        return cls(alerts.open_after, alerts.open_of, alerts.close_after, alerts.cooldown_s, alerts.update_every)


class AlertTracker:
    def __init__(self, stream: str, rules: AlertRules = AlertRules(), track: int | None = None):
        self.stream, self.rules, self.track = stream, rules, track
        self.recent: deque[Verdict] = deque(maxlen=rules.open_of)   # the last windows with a face
        self.alert: Alert | None = None                              # the open alert, as last sent
        self.real_run = 0            # consecutive real windows while open
        self.since_update = 0
        self.quiet_until = float("-inf")
        self.started = 0             # alerts opened on this stream (a metric)

    @property
    def active(self) -> bool:
        return self.alert is not None

    def on_verdict(self, v: Verdict) -> Alert | None:
        """The message to publish for this window, if any."""
        if v.label == "no_face":
            return None
        if self.alert is None:
            return self._maybe_open(v)
        self.since_update += 1
        if v.label == "fake":
            self.real_run = 0
            self.alert = self._next(self.alert, v, "update", windows=self.alert.windows + 1,
                                    peak=max(self.alert.peak_score, v.score))
        else:
            self.real_run += 1
            self.alert = self._next(self.alert, v, "update")
            if self.real_run >= self.rules.close_after:
                return self.end(v.t_last)
        if self.since_update >= self.rules.update_every:
            self.since_update = 0
            return self.alert
        return None

    def end(self, t: float) -> Alert | None:
        """Ends the open alert (stream ended, evicted, or enough real windows): its `end` message."""
        if self.alert is None:
            return None
        ended = Alert(**{**self.alert.__dict__, "state": "end", "t_end": t})
        self.alert, self.real_run, self.since_update = None, 0, 0
        self.recent.clear()
        self.quiet_until = t + self.rules.cooldown_s
        return ended

    def _maybe_open(self, v: Verdict) -> Alert | None:
        self.recent.append(v)
        fakes = [w for w in self.recent if w.label == "fake"]
        if len(fakes) < self.rules.open_after or v.t_last < self.quiet_until:
            return None
        self.alert = Alert(alert_id=uuid.uuid4().hex, stream=self.stream, state="start", t_start=fakes[0].t_first,
                           t_last=v.t_last, t_end=None, windows=len(fakes), score=v.score,
                           peak_score=max(w.score for w in fakes), model=v.model, evidence=None,
                           untrained=v.untrained, track=self.track, calibrated=v.calibrated, decisive=v.decisive,
                           threshold=v.threshold)
        self.real_run, self.since_update = 0, 0
        self.recent.clear()
        self.started += 1
        return self.alert

    def evidence_written(self, paths: list[str]) -> Alert:
        """The `update` that names the open alert's evidence files, once they are written (every
        later message carries them too)."""
        self.alert = Alert(**{**self.alert.__dict__, "state": "update", "evidence": paths})
        return self.alert

    @staticmethod
    def _next(alert: Alert, v: Verdict, state: str, windows: int | None = None, peak: float | None = None) -> Alert:
        return Alert(**{**alert.__dict__, "state": state, "t_last": v.t_last, "score": v.score,
                        "decisive": v.decisive,
                        "windows": alert.windows if windows is None else windows,
                        "peak_score": alert.peak_score if peak is None else peak})


def replay(windows, rules: AlertRules, threshold: float) -> int:
    """Alerts that would have opened at `threshold`: the live rule (this module's AlertTracker, one
    per stream and track) fed each window labelled fake when its decisive score reaches the
    threshold. `windows`: dicts with stream, track, t_first, t_last and decisive (None: no face),
    in time order per stream. What `dfwatch calibrate` counts as false alerts in real footage."""
    trackers: dict[tuple, AlertTracker] = {}
    opened = 0
    for i, w in enumerate(windows):
        key = (w["stream"], w["track"])
        if key not in trackers:
            trackers[key] = AlertTracker(w["stream"], rules, w["track"])
        decisive = w["decisive"]
        label = "no_face" if decisive is None else "fake" if decisive >= threshold else "real"
        alert = trackers[key].on_verdict(Verdict(
            stream=w["stream"], window=i, seq_first=0, seq_last=0, t_first=w["t_first"], t_last=w["t_last"],
            score=decisive, label=label, threshold=threshold, faces=0, frames=0,
            model="", backend="", latency_ms=0.0, track=w["track"], decisive=decisive))
        opened += alert is not None and alert.state == "start"
    return opened
