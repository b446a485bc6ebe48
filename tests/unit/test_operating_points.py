"""Operating points and calibration: the bounds are the textbook's, the replay of the alert rule
is the live rule, and calibration picks the lowest threshold the footage can vouch for."""
from __future__ import annotations

import numpy as np
import pytest

from daemon.clients.calibrate import TooLittleFootage, choose
from daemon.outcomes.alerts import AlertRules, AlertTracker, replay
from daemon.wire.protocol import Verdict
from engines.operating_points import (CalibrationError, events_upper, fpr_upper, read_calibration,
                                      roc_operating_points, tpr_at, write_calibration)
from engines.pipeline.decision import frame_vote


def test_bounds_match_the_published_tables():
    # one-sided 95 % Clopper-Pearson upper limits (e.g. Clopper & Pearson 1934; 1 - 0.05^(1/n) for k = 0)
    assert fpr_upper(0, 10) == pytest.approx(0.2589, abs=1e-4)
    assert fpr_upper(1, 10) == pytest.approx(0.3942, abs=1e-4)
    assert fpr_upper(0, 20) == pytest.approx(0.1391, abs=1e-4)
    assert fpr_upper(0, 100) == pytest.approx(0.0295, abs=1e-4)
    assert fpr_upper(5, 5) == 1.0
    # one-sided 95 % Poisson upper limits (Gehrels 1986, Table 1, 1.645 sigma): 3.00, 4.74, 6.30, 10.51
    assert [round(events_upper(k), 2) for k in (0, 1, 2, 5)] == [3.0, 4.74, 6.3, 10.51]


def test_operating_points_from_a_validation_roc():
    rng = np.random.default_rng(0)
    real, fake = rng.uniform(0, 0.6, 400), rng.uniform(0.3, 1.0, 200)
    labels = np.r_[np.zeros(400), np.ones(200)]
    op = roc_operating_points(labels, np.r_[real, fake])
    assert op["negatives"] == 400 and op["positives"] == 200
    p10, p1, p01 = op["points"][:3]
    assert p10["target_fpr"] == 0.1 and p10["supported"] and p1["supported"] and not p01["supported"]  # 400 real: ~3/400
    # the lowest threshold with at most 10 % of real windows at or above it, and what it keeps of the fakes
    assert (real >= p10["threshold"]).mean() <= 0.1 < (real >= p10["threshold"] - 1e-9).mean() + 1 / 400
    assert p10["tpr"] == pytest.approx((fake >= p10["threshold"]).mean())
    assert p10["fpr_upper"] == pytest.approx(fpr_upper(round(p10["fpr"] * 400), 400))
    assert tpr_at(op["roc"], p10["threshold"]) <= p10["tpr"] + 1e-9  # never optimistic


def test_the_replay_is_the_live_alert_rule():
    """For many thresholds, alerts counted by the replay over decisive scores equal those the live
    AlertTracker opens when fed the verdicts the frame vote decides at that threshold."""
    rng = np.random.default_rng(1)
    rules = AlertRules(open_after=2, open_of=3, close_after=3, cooldown_s=5.0)
    windows = []
    for stream in ("a", "b"):
        for track in (1, 2):
            for i in range(60):
                p = rng.beta(2, 3 if i % 20 < 10 else 1, size=8)  # stretches of more and less fake-looking faces
                windows.append({"stream": stream, "track": track, "t_first": float(i), "t_last": i + 3.5, "p": p,
                                "decisive": frame_vote(p, 0.5).decisive})
    for t in np.linspace(0.2, 0.9, 15):
        live, trackers = 0, {}
        for i, w in enumerate(windows):
            d = frame_vote(w["p"], t)
            tracker = trackers.setdefault((w["stream"], w["track"]), AlertTracker(w["stream"], rules, w["track"]))
            alert = tracker.on_verdict(Verdict(w["stream"], i, 0, 0, w["t_first"], w["t_last"], d.score, d.label, t,
                                               8, 8, "m", "b", 0.0, track=w["track"]))
            live += alert is not None and alert.state == "start"
        assert replay(windows, rules, float(t)) == live, t


def test_calibration_picks_the_lowest_threshold_the_footage_vouches_for():
    rules = AlertRules(open_after=2, open_of=3, close_after=3, cooldown_s=0.0)
    # one camera, 1 hour: real windows scoring 0.1, with one stretch of three at 0.7 (a false alarm at 0.5)
    scores = [0.1] * 100 + [0.7] * 3 + [0.1] * 100
    windows = [{"stream": "f0", "track": 1, "t_first": 10.0 * i, "t_last": 10.0 * i + 8, "decisive": s}
               for i, s in enumerate(scores)]
    loose = choose(windows, hours=1.0, budget=200.0, rules=rules, roc=None)
    assert loose.threshold == pytest.approx(0.1) and loose.false_alerts == 1  # 1 alert: at most 114/day: fits 200
    strict = choose(windows, hours=1.0, budget=100.0, rules=rules, roc=None)
    assert strict.threshold > 0.7 and strict.false_alerts == 0 and strict.upper_per_day == pytest.approx(71.9, abs=0.1)
    with pytest.raises(TooLittleFootage, match=r"1 hours support at most 71.9 false alerts/day at 95 %; record more"):
        choose(windows, hours=1.0, budget=50.0, rules=rules, roc=None)


def test_a_calibration_for_another_bundle_is_refused(tmp_path):
    class Bundle:
        id, checksum = "b1", "a" * 64
    write_calibration(tmp_path / "c.json", {"bundle": "b1", "bundle_checksum": "a" * 64, "threshold": 0.7})
    assert read_calibration(tmp_path / "c.json", Bundle)["threshold"] == 0.7
    Bundle.checksum, Bundle.id = "b" * 64, "b2"
    with pytest.raises(CalibrationError, match=r"made for bundle b1 \(sha256 aaaaaaaaaaaa\), not b2"):
        read_calibration(tmp_path / "c.json", Bundle)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CalibrationError, match="not a dfwatch calibration file"):
        read_calibration(tmp_path / "x.json", Bundle)
