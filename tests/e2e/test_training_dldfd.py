"""Training the DLDFD family: face-crop extraction, fit, eval (majority vote, TCR), export,
the paper's protocols — and train/serve parity — on a generated two-method dataset."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from helpers.daemon import DFWATCH, serve_frames
from helpers.training import sampled_frames
from training.datasets import index_dataset
from training.cache import cache_path, read_entry
from training.extract import sample_indices

T = 8


@pytest.fixture(scope="module")
def dataset(module_tmp, footage):
    root = module_tmp / "dataset" / "two-methods"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_dataset.py"), str(root), "--train", "2",
                        "--val", "1", "--test", "2", "--frames", "16", "--methods", "swap,retouch"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return root


def dfwatch(*args):
    return subprocess.run(DFWATCH + list(args), capture_output=True, text=True)


@pytest.fixture(scope="module")
def chain(module_tmp, dataset, dldfd_bundle):
    """extract -> fit -> eval -> export -> protocols, with the CLI, once for this module."""
    work = module_tmp / "dldfd-chain"
    cache, run, report, exported, protocols = (work / n for n in ("cache", "run", "eval", "bundle", "protocols"))
    steps = {
        "extract": dfwatch("train", "extract", "--bundle", str(dldfd_bundle), "--dataset", str(dataset),
                           "--cache", str(cache)),
        "fit": dfwatch("train", "fit", "--cache", str(cache), "--bundle", str(dldfd_bundle), "--out", str(run),
                       "--epochs", "2", "--batch-size", "16"),
        "eval": dfwatch("train", "eval", "--cache", str(cache), "--model", str(run / "model.pt"), "--out", str(report)),
        "export": dfwatch("train", "export", "--bundle", str(dldfd_bundle), "--model", str(run / "model.pt"),
                          "--out", str(exported), "--report", str(report / "report.json"), "--id", "dldfd-trained"),
        "protocols": dfwatch("train", "protocols", "--bundle", str(dldfd_bundle), "--cache", str(cache),
                             "--out", str(protocols), "--epochs", "1", "--batch-size", "16",
                             "--protocols", "cross"),  # every protocol's runs: tests/unit/test_protocols.py
    }
    for name, r in steps.items():
        assert r.returncode == 0, f"{name}: {r.stderr[-2000:]}"
    return {"cache": cache, "run": run, "report": report, "bundle": exported, "protocols": protocols,
            "steps": steps}


def test_extract_caches_the_daemons_face_crops(chain, dataset):
    counts = json.loads(chain["steps"]["extract"].stdout.splitlines()[-1])
    assert counts == {"videos": 15, "skipped": 0, "extracted": 15, "invalid": 0}
    videos = index_dataset(dataset, "test")
    assert sorted({v.group for v in videos if v.label}) == ["retouch", "swap"]
    video = next(v for v in videos if v.group == "retouch")
    entry = read_entry(cache_path(chain["cache"], video))
    meta = entry["meta"]
    assert meta["valid"] and meta["family"] == "dldfd" and meta["group"] == "retouch"
    assert meta["models"]["crop"]["size"] == 64
    assert entry["crops"].shape == (T, 64, 64, 3) and entry["crops"].dtype == np.uint8
    assert entry["window"].tolist() == list(range(T)) and entry["found"].all()
    assert entry["frame_indices"].tolist() == sample_indices(16, T)


def test_fit_weights_the_classes_and_keeps_the_best_epoch(chain, dldfd_bundle):
    from engines.bundles.bundle import load_bundle
    from engines.models.checkpoints import load_dldfd

    history = json.loads((chain["run"] / "history.json").read_text())
    summary, rows = history["summary"], history["history"]
    # 2 real and 4 fake training videos (two methods), every frame a face: fakes weigh real/fake = 0.5
    assert summary["train_frames"] == 6 * T and summary["fake_weight"] == pytest.approx(0.5)
    assert summary["config"]["lr"] == 1e-3 and summary["config"]["beta1"] == 0.9 and summary["config"]["flip"]
    assert len(rows) == 2 and summary["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in rows))
    trained = load_dldfd(chain["run"] / "model.pt").state_dict()
    initial = load_bundle(dldfd_bundle).module("frame").model.state_dict()
    assert not torch.equal(trained["fc.weight"], initial["fc.weight"])
    assert not torch.equal(trained["trunk.layer4.2.conv3.weight"], initial["trunk.layer4.2.conv3.weight"])
    assert list((chain["run"] / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_reports_true_classification_rates(chain):
    report = json.loads((chain["report"] / "report.json").read_text())
    assert report["videos"] == 6 and report["tcr"] == report["accuracy"] and 0 <= report["frame_tcr"] <= 1
    assert report["decision"] == "majority vote of face frames" and len(report["scores"]) == 6
    assert sum(sum(row) for row in report["confusion_matrix"]) == 6


def test_exported_bundle_serves_the_trained_model(chain):
    manifest = json.loads((chain["bundle"] / "manifest.json").read_text())
    assert manifest["family"] == "dldfd" and manifest["trained"] and manifest["id"] == "dldfd-trained"
    assert set(manifest["onnx"]) == {"frame"} and manifest["training"]["eval"]["videos"] == 6
    spacing = json.loads((chain["run"] / "history.json").read_text())["summary"]["frame_spacing_s"]
    assert spacing > 0 and manifest["window"]["fps"] == pytest.approx(1 / spacing)


def test_protocols_table(chain):
    rows = json.loads((chain["protocols"] / "table.json").read_text())
    assert [(r["protocol"], r["tested"], r["trained_on"], r["test_videos"]) for r in rows] == [
        ("cross", "retouch", ["swap"], 4), ("cross", "swap", ["retouch"], 4)]
    assert all(0 <= r["tcr"] <= 1 for r in rows)
    table = (chain["protocols"] / "table.md").read_text()
    assert table.startswith("| protocol | tested on |") and "| cross | swap | retouch | 4 |" in table
    assert (chain["protocols"] / "cross-swap" / "model.pt").is_file()
    assert table == chain["steps"]["protocols"].stdout


def test_train_serve_parity(chain, dataset, tmp_path):
    """The exported bundle, served by the daemon on a test video's sampled frames, gives the
    score (mean P(fake) of the face frames) `train eval` reported for that video."""
    video = index_dataset(dataset, "test")[0]
    expected = json.loads((chain["report"] / "report.json").read_text())["scores"][video.key]
    (verdict,) = serve_frames(chain["bundle"], sampled_frames(chain["cache"], video), "v", tmp_path, 1)
    assert verdict.family == "dldfd" and not verdict.untrained and verdict.model == "dldfd-trained"
    assert abs(verdict.score - expected) < 1e-5, (verdict.score, expected)


def test_clear_errors_for_mixed_families(chain, tmp_path, small_bundle):
    r = dfwatch("train", "fit", "--cache", str(chain["cache"]), "--out", str(tmp_path / "r"))
    assert r.returncode == 1 and "needs --bundle DIR, the dldfd bundle" in r.stderr and "Traceback" not in r.stderr
    r = dfwatch("train", "fit", "--cache", str(chain["cache"]), "--bundle", str(small_bundle), "--out", str(tmp_path / "r"))
    assert r.returncode == 1 and "a stylegru bundle; the cache holds dldfd face crops" in r.stderr
    r = dfwatch("train", "export", "--bundle", str(small_bundle), "--model", str(chain["run"] / "model.pt"),
                "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "not a dfwatch head file" in r.stderr
