"""Operating points and a site's calibration, with real parts: the detector trained on the
synthetic set (tests/conftest.py: detector) has operating points from its validation split; a
threshold is calibrated on real footage for a false-alert budget; a held-out real clip served
with it opens no more alerts than the budget predicts, and the synthetic fakes are still caught."""
from __future__ import annotations

import json
import subprocess

from engines.bundles.bundle import load_bundle
from helpers.clips import write_clip
from helpers.daemon import DFWATCH, Subscriber, daemon_env, start, stop

# false alerts per camera-day: 21 s of footage vouch for 12,400 with no false alert, for 19,700 with one, so a
# budget of 13,000 asks the calibration for a threshold at which this real footage opens no alert at all
BUDGET = 13_000.0
SETTINGS = ["--set", "window.stride=2", "--set", "inference.max_frame_age_s=0"]


def dfwatch(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(DFWATCH + list(args), capture_output=True, text=True, timeout=300, env=env)


def test_operating_points_calibration_and_a_held_out_clip(detector, dldfd_bundle, gallery, footage, tmp_path):
    # the bundle's operating points, from `train eval` on the validation split, kept by export
    bundle = load_bundle(detector)
    op = bundle.manifest.operating_points
    assert op and op["split"] == "val" and op["negatives"] and len(op["points"]) == 4
    info = dfwatch("engines", "info", str(detector)).stdout
    assert "operating points (val split" in info and "FPR <= 0.1" in info
    assert "operating points: none (uncalibrated" in dfwatch("engines", "info", str(dldfd_bundle)).stdout

    # calibrate on 21 s of real footage (test parts of franck.mp4, used neither in training nor the gallery)
    real = write_clip(footage / "franck.mp4", tmp_path / "real.mp4", 500, start=3800)
    env = daemon_env(tmp_path)
    short = write_clip(footage / "franck.mp4", tmp_path / "short.mp4", 96, start=3800)  # 4 s: far too little for 1 a day
    too_short = dfwatch("calibrate", str(detector), "--real", str(short), "--false-alerts-per-day", "1",
                        "--out", str(tmp_path / "no.json"), *SETTINGS, env=env)
    assert too_short.returncode == 2 and too_short.stderr.count("\n") == 1, too_short.stderr
    assert "hours support at most" in too_short.stderr and "false alerts/day at 95 %; record more" in too_short.stderr
    assert not (tmp_path / "no.json").exists()
    calibration = tmp_path / "calibration.json"
    r = dfwatch("calibrate", str(detector), "--real", str(real), "--false-alerts-per-day", str(BUDGET),
                "--out", str(calibration), *SETTINGS, env=env)
    assert r.returncode == 0, r.stderr
    cal = json.loads(calibration.read_text())
    assert cal["bundle_checksum"] == bundle.checksum and cal["false_alerts_per_day_upper"] <= BUDGET
    assert cal["false_alerts"] == 0
    assert cal["windows"] > 30 and 0 < cal["hours"] < 0.01 and "validation TPR at this threshold" in r.stdout
    print(r.stdout)

    # a held-out real clip served with the calibration: its alerts within what the budget allows
    held_out = write_clip(footage / "franck.mp4", tmp_path / "held_out.mp4", 240, start=4400)
    allowed = BUDGET * (240 / 24.0 / 3600) / 24
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(detector), "--stream", f"h={held_out}", "--set", "capture.pace=false",
                  "--set", f"inference.calibration={calibration}", *SETTINGS], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: s.stream("h").state == "ended" and s.of("h"), 120, "the held-out clip's verdicts", log)
        sub.pump(1.0)
    finally:
        sub.close()
        assert stop(proc) == 0
    assert all(v.calibrated and v.threshold == cal["threshold"] for v in sub.of("h"))
    # 21 s of footage vouch for thousands of false alerts a camera-day: every verdict says so, and the log
    assert all(v.false_alerts_per_day == cal["false_alerts_per_day_upper"] > 1000 for v in sub.of("h"))
    assert "the site calibration vouches for at most" in log.read_text()
    opened = [a for a in sub.alerts if a.state == "start"]
    assert len(opened) <= allowed, (len(opened), allowed)

    # the synthetic fakes (validation split, never trained on) at the calibrated threshold
    fakes = sorted(str(p) for p in (gallery / "fake").glob("val-*.mp4"))
    scan = dfwatch("scan", *fakes, "--bundle", str(detector), "--json", "--set",
                   f"inference.calibration={calibration}", *SETTINGS, env=env)
    files = [json.loads(line) for line in scan.stdout.splitlines() if json.loads(line)["type"] == "file"]
    assert files and all(f["calibrated"] and f["threshold"] == cal["threshold"] and
                         f["false_alerts_per_day"] == cal["false_alerts_per_day_upper"] for f in files)
    tpr = sum(f["verdict"] == "fake" for f in files) / len(files)
    print(f"synthetic fakes detected at the calibrated threshold {cal['threshold']:.4g}: TPR {tpr:.2f}")
    assert tpr >= 0.5

    # a calibration is the bundle's own: another bundle refuses it with one line (exit 2)
    other = dfwatch("scan", str(held_out), "--bundle", str(dldfd_bundle), "--set",
                    f"inference.calibration={calibration}", env=env)
    assert other.returncode == 2 and "made for bundle gallery-trained" in other.stderr and \
        other.stderr.count("\n") == 1, other.stderr
