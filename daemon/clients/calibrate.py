"""`dfwatch calibrate BUNDLE --real VIDEO_OR_DIR...`: a threshold from a false-alarm budget,
measured on footage the operator knows is real (their cameras, lighting, compression, faces).

The footage is scored with the daemon's own analysis (the scan path: daemon/clients/scan.py), then
the live alert rule is replayed over the window scores at candidate thresholds
(daemon/outcomes/alerts.py: replay, per stream and face track). The lowest threshold whose false
alerts per camera-day stay within the budget *with their 95 % upper bound* wins: k alerts in H
hours of footage bound the rate by chi2.ppf(0.95, 2k + 2) / 2 per H hours (engines/operating_points.py).
Even zero alerts bound it by 3.0 per H hours, so a budget of B alerts a day needs at least
72 / B hours of real footage; with less, calibrate says how much the footage supports and exits 2:
it never makes a number up.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from daemon.outcomes.alerts import replay
from engines.errors import DfwatchError
from engines.operating_points import CONFIDENCE, events_upper, tpr_at

MAX_CANDIDATES = 400   # thresholds tried: every distinct window score, or this many of their quantiles


@dataclass
class Calibration:
    threshold: float
    false_alerts: int             # in the footage, at the threshold
    per_day: float                # false alerts per camera-day, as measured
    upper_per_day: float          # their upper confidence bound
    hours: float
    windows: int
    budget: float
    tpr: float | None             # the bundle's validation TPR at the threshold (None: no operating points)

    def as_file(self, bundle, sources: list[str]) -> dict:
        return {"bundle": bundle.id, "bundle_checksum": bundle.checksum, "threshold": self.threshold,
                "budget_per_day": self.budget, "confidence": CONFIDENCE, "hours": round(self.hours, 4),
                "windows": self.windows, "false_alerts": self.false_alerts,
                "false_alerts_per_day": round(self.per_day, 4), "false_alerts_per_day_upper": round(self.upper_per_day, 4),
                "validation_tpr": self.tpr, "footage": sources}


class TooLittleFootage(DfwatchError):
    """The footage cannot vouch for the budget: one line, exit 2 (never a made-up threshold)."""
    exit_code = 2

    def __init__(self, hours: float, supported: float, budget: float):
        super().__init__(f"{hours:.3g} hours support at most {supported:.3g} false alerts/day at "
                         f"{CONFIDENCE * 100:.0f} %; record more (a budget of {budget:g} a day needs at least "
                         f"{events_upper(0) * 24 / budget:.3g} hours of real footage)")


def per_day_upper(alerts: int, hours: float) -> float:
    return events_upper(alerts) * 24.0 / hours


def candidates(scores: np.ndarray) -> np.ndarray:
    """Thresholds worth trying, ascending: each distinct decisive score (a window flips exactly
    there), thinned to quantiles when there are many, and one above them all (nothing fake)."""
    values = np.unique(scores)
    if len(values) > MAX_CANDIDATES:
        values = np.unique(np.quantile(values, np.linspace(0, 1, MAX_CANDIDATES)))
    return np.append(values, np.nextafter(values[-1], np.inf) if len(values) else 1.0)


def check_supports(hours: float, budget: float) -> None:
    """Raises TooLittleFootage when even no false alert in `hours` could not vouch for the budget."""
    if hours <= 0 or per_day_upper(0, hours) > budget:
        raise TooLittleFootage(hours, per_day_upper(0, hours) if hours > 0 else float("inf"), budget)


def footage_hours(paths: list[str]) -> float:
    """The hours the files declare (before any is scanned: a budget they cannot support is said at once)."""
    from daemon.clients.scan import video_facts

    total = 0.0
    for path in paths:
        try:
            total += (video_facts(path)["duration_s"] or 0.0) / 3600.0
        except OSError:
            continue  # unreadable: the scan says so
    return total


def choose(windows: list[dict], hours: float, budget: float, rules, roc: dict | None) -> Calibration:
    """The lowest candidate threshold whose false alerts per camera-day, bound included, fit the budget."""
    check_supports(hours, budget)
    scores = np.array([w["decisive"] for w in windows if w["decisive"] is not None], np.float64)
    for t in candidates(scores):
        alerts = replay(windows, rules, float(t))
        if per_day_upper(alerts, hours) <= budget:
            return Calibration(float(t), alerts, alerts * 24.0 / hours, per_day_upper(alerts, hours), hours,
                               len(windows), budget, tpr_at(roc, float(t)) if roc else None)
    raise AssertionError("a threshold above every score opens no alert")  # unreachable: checked above


def footage_windows(scanner, paths: list[str], min_windows: int) -> tuple[list[dict], float, list[str]]:
    """Every window of the real footage, with its stream (one per file: a camera) and decisive
    score, and the hours of footage. A file that cannot be read, or too short for the alert rule
    to open an alert at all (fewer than `min_windows` windows with a face: it would count as
    alert-free whatever the threshold), is said on stderr and left out."""
    from daemon.clients.scan import video_facts

    windows, hours, used = [], 0.0, []
    for path in paths:
        result = scanner.scan(path)
        if result.error:
            print(f"dfwatch calibrate: {result.error} (left out)", file=sys.stderr)
            continue
        faced = sum(w["decisive"] is not None for w in result.windows)
        if faced < min_windows:
            print(f"dfwatch calibrate: {path}: {faced} window(s) with a face, and the alert rule needs "
                  f"{min_windows} to open an alert: too short to tell anything (left out)", file=sys.stderr)
            continue
        stream = f"f{len(used)}"
        windows += [{**w, "stream": stream} for w in result.windows]
        duration = video_facts(path)["duration_s"]
        span = max((w["t_last"] for w in result.windows), default=0.0) - min((w["t_first"] for w in result.windows),
                                                                           default=0.0)
        hours += (duration if duration else span) / 3600.0
        used.append(path)
    return windows, hours, used


def report(c: Calibration, bundle) -> str:
    tpr = "uncalibrated bundle (no operating points: no validation TPR)" if c.tpr is None else f"{c.tpr:.3f}"
    rows = [("windows scored", f"{c.windows:,}"), ("hours of real footage", f"{c.hours:.3g}"),
            ("threshold", f"{c.threshold:.4g} (bundle default {bundle.threshold:g})"),
            ("false alerts in the footage", f"{c.false_alerts}"),
            ("false alerts per camera-day", f"{c.per_day:.3g} expected, at most {c.upper_per_day:.3g} "
                                            f"({CONFIDENCE:.0%} upper bound); budget {c.budget:g}"),
            ("validation TPR at this threshold", tpr)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ---- from a running daemon -------------------------------------------------------------------

def daemon_windows(sub, streams: set[str], hours: float, model: str) -> tuple[list[dict], float]:
    """The windows a running daemon publishes for `streams` over `hours` of wall time from its
    first verdict of them (a daemon still loading its models costs none of the hours), and the
    camera-hours they cover (each stream's span of window times). Verdicts of another model are
    refused: a calibration is one bundle's."""
    import time

    from daemon.wire.protocol import Verdict
    from daemon.wire.subscriber import receive

    windows, spans, deadline = [], {}, None
    while deadline is None or (left := deadline - time.monotonic()) > 0:
        msg = receive(sub, 1.0 if deadline is None else min(left, 1.0))
        if not isinstance(msg, Verdict) or msg.stream not in streams:
            continue
        if deadline is None:
            deadline = time.monotonic() + hours * 3600
        if msg.model != model:
            raise CalibrationSourceError(f"the daemon serves {msg.model}, not the bundle being calibrated ({model})")
        windows.append({"stream": msg.stream, "track": msg.track, "t_first": msg.t_first, "t_last": msg.t_last,
                        "decisive": msg.decisive if msg.label != "no_face" else None})
        first, last = spans.get(msg.stream, (msg.t_first, msg.t_last))
        spans[msg.stream] = (min(first, msg.t_first), max(last, msg.t_last))
    return windows, sum(last - first for first, last in spans.values()) / 3600.0


class CalibrationSourceError(DfwatchError):
    """The daemon's verdicts cannot calibrate this bundle (another model serves them)."""
    exit_code = 2


# ---- from reviews ------------------------------------------------------------------------------

def reviews_report(reviewed: list[dict], threshold: float) -> str:
    """What reviewed alerts say about the threshold: each false alarm opened at a window whose
    decisive score was above the threshold then in force; a threshold above the highest of them
    would have kept every reviewed false alarm from opening when it did, and the confirmed alerts
    whose decisive scores reach it are the ones it still catches (the TPR check)."""
    def value(m: dict) -> float | None:  # alerts stored before `decisive` existed carry the score only
        return m.get("decisive") if m.get("decisive") is not None else m.get("score")

    def opening(r: dict) -> float | None:
        return value(next((m for m in r["messages"] if m.get("state") == "start"), r["messages"][0]))

    def peak(r: dict) -> float | None:
        return max((v for v in map(value, r["messages"]) if v is not None), default=None)

    def raised_at(r: dict) -> float:  # the alert's own threshold; alerts before 0.5 carry none: the one in force
        start = next((m for m in r["messages"] if m.get("state") == "start"), r["messages"][0])
        return start["threshold"] if isinstance(start.get("threshold"), (int, float)) else threshold

    false = [r for r in reviewed if r["review"] == "false_alarm"]
    confirmed = [r for r in reviewed if r["review"] == "confirmed"]
    raised = sorted({raised_at(r) for r in reviewed})
    threshold = raised[-1] if raised else threshold   # what the reviewed alerts were raised under (the highest)
    lines = [f"reviewed alerts: {len(false)} false alarm(s), {len(confirmed)} confirmed; raised at threshold "
             f"{', '.join(f'{t:.4g}' for t in raised) or f'{threshold:.4g}'}"]
    for r in false:
        score = opening(r)
        by = f", reviewed by {r.get('reviewer', 'unknown')}"
        lines.append(f"  false alarm {r['alert_id'][:8]} ({r['stream']}{by}): opened at decisive score {score:.4g}"
                     if score is not None else f"  false alarm {r['alert_id'][:8]}{by}: no score")
    openings = [v for v in map(opening, false) if v is not None]
    if openings:
        needed = float(np.nextafter(max(openings), np.inf))
        kept = sum(1 for r in confirmed if (peak(r) or 0.0) >= needed)
        lines.append(f"a threshold of {needed:.4g} would have kept every reviewed false alarm from opening "
                     f"(from {threshold:.4g}: {'higher' if needed > threshold else 'no change needed'})")
        if confirmed:
            lines.append(f"at it, {kept} of the {len(confirmed)} confirmed alert(s) still reach the threshold "
                         f"(TPR check {kept / len(confirmed):.2f})")
    elif confirmed:
        kept = sum(1 for r in confirmed if (peak(r) or 0.0) >= threshold)
        lines.append(f"no false alarm reviewed; {kept} of the {len(confirmed)} confirmed alert(s) reach the threshold")
    return "\n".join(lines)
