"""Verdicts made by hand and fed to the alert rule, for the rule's tests and the watch tests."""
from __future__ import annotations

from daemon.outcomes.alerts import AlertTracker
from daemon.wire.protocol import Alert, Verdict


def verdict(label: str, t: float, score: float | None = None, stream: str = "door", untrained: bool = False) -> Verdict:
    if score is None:
        score = None if label == "no_face" else (0.9 if label == "fake" else 0.1)
    return Verdict(stream=stream, window=int(t), seq_first=0, seq_last=1, t_first=t - 1, t_last=t, score=score,
                   label=label, threshold=0.5, faces=8, frames=8, model="m", backend="torch", latency_ms=1.0,
                   untrained=untrained)


def feed(tracker: AlertTracker, labels: str, t0: float = 100.0, **kw) -> list[tuple[float, Alert]]:
    """labels: one letter a window (f fake, r real, n no_face), a window a second from t0."""
    names = {"f": "fake", "r": "real", "n": "no_face"}
    out = []
    for i, c in enumerate(labels):
        msg = tracker.on_verdict(verdict(names[c], t0 + i, **kw))
        if msg:
            out.append((t0 + i, msg))
    return out


def states(messages) -> list[str]:
    return [m.state for _, m in messages]
