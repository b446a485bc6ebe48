"""Training: dataset layouts, resumable extraction, fit, eval, export — and train/serve parity."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from helpers.daemon import DFWATCH, serve_frames
from helpers.training import sampled_frames
from training.datasets import DatasetError, index_dataset
from training.evaluate import compute_metrics, equal_error_rate
from training.cache import cache_path, read_entry
from training.extract import sample_indices


# ---- dataset layouts -----------------------------------------------------------------------

def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_faceforensics_layout(tmp_path):
    root = tmp_path / "ff"
    for vid in ("071", "054", "001", "002"):
        touch(root / "original_sequences/youtube/c23/videos" / f"{vid}.mp4")
    for name in ("071_054", "054_071", "001_002"):
        touch(root / "manipulated_sequences/Deepfakes/c23/videos" / f"{name}.mp4")
    touch(root / "manipulated_sequences/NeuralTextures/c23/videos/071_054.mp4")
    (root / "train.json").write_text(json.dumps([["071", "054"]]))
    (root / "test.json").write_text(json.dumps([["001", "002"]]))
    train = index_dataset(root, "train")
    assert sorted((v.key, v.label, v.group) for v in train) == [
        ("manipulated_sequences/Deepfakes/c23/videos/054_071.mp4", 1, "Deepfakes"),
        ("manipulated_sequences/Deepfakes/c23/videos/071_054.mp4", 1, "Deepfakes"),
        ("manipulated_sequences/NeuralTextures/c23/videos/071_054.mp4", 1, "NeuralTextures"),
        ("original_sequences/youtube/c23/videos/054.mp4", 0, "youtube"),
        ("original_sequences/youtube/c23/videos/071.mp4", 0, "youtube")]
    assert {v.key for v in index_dataset(root, "test")} == {
        "original_sequences/youtube/c23/videos/001.mp4", "original_sequences/youtube/c23/videos/002.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/001_002.mp4"}
    with pytest.raises(DatasetError, match="no val.json split file"):
        index_dataset(root, "val")
    with pytest.raises(DatasetError, match="expected original_sequences/youtube/c40/videos"):
        index_dataset(root, "train", "faceforensics", quality="c40")


def test_celebdf_layout(tmp_path):
    root = tmp_path / "celeb"
    touch(root / "Celeb-real/id0_0000.mp4")
    touch(root / "YouTube-real/00170.mp4")
    touch(root / "Celeb-synthesis/id0_id1_0000.mp4")
    touch(root / "Celeb-synthesis/id1_id0_0003.mp4")
    (root / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id1_id0_0003.mp4\n")
    test = index_dataset(root, "test")
    assert sorted((v.key, v.label) for v in test) == [("Celeb-synthesis/id1_id0_0003.mp4", 1),
                                                      ("YouTube-real/00170.mp4", 0)]
    rest = [v.key for s in ("train", "val") for v in _maybe(root, s)]
    assert sorted(rest) == ["Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4"]
    (root / "List_of_testing_videos.txt").write_text("maybe YouTube-real/00170.mp4\n")
    with pytest.raises(DatasetError, match=r"List_of_testing_videos.txt:1: expected '<1 real\|0 fake>"):
        index_dataset(root, "test")


def _maybe(root, split):
    try:
        return index_dataset(root, split)
    except DatasetError:
        return []


def test_generic_layout_and_wrong_roots(tmp_path):
    root = tmp_path / "g"
    touch(root / "real/a.mp4")
    touch(root / "fake/sub/b.mp4")
    (root / "split.json").write_text(json.dumps({"train": ["real/a.mp4", "fake/sub/b.mp4"]}))
    assert sorted((v.key, v.label) for v in index_dataset(root, "train")) == [("fake/sub/b.mp4", 1), ("real/a.mp4", 0)]
    with pytest.raises(DatasetError, match="no videos for split 'test'"):
        index_dataset(root, "test")
    with pytest.raises(DatasetError, match="no such dataset directory"):
        index_dataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"not a dataset root: expected FaceForensics\+\+"):
        index_dataset(tmp_path / "empty", "train")


def test_uniform_sampling():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 8) == [0, 1, 2]  # padded circularly later, by the daemon's code
    assert sample_indices(0, 8) == []


def test_metrics_on_known_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert equal_error_rate(labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == 0.0
    m = compute_metrics(labels, np.array([0.1, 0.6, 0.3, 0.7, 0.4, 0.9]), 0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]] and m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(8 / 9) and set(m["report"]) >= {"real", "fake"}


# ---- the chain on a generated dataset ------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(module_tmp, footage):
    root = module_tmp / "dataset" / "generic"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_dataset.py"), str(root), "--train", "2",
                        "--val", "1", "--test", "2", "--frames", "24"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return root


def dfwatch(*args, env=None):
    return subprocess.run(DFWATCH + list(args), capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def chain(module_tmp, dataset, small_bundle):
    """extract -> fit -> eval -> export, with the CLI, once for this module."""
    work = module_tmp / "chain"
    cache, run, report, exported = work / "cache", work / "run", work / "eval", work / "bundle"
    steps = {
        "extract": dfwatch("train", "extract", "--bundle", str(small_bundle), "--dataset", str(dataset),
                           "--cache", str(cache)),
        "fit": dfwatch("train", "fit", "--cache", str(cache), "--out", str(run), "--epochs", "6",
                       "--gru-hidden", "64", "--width", "32"),
        "eval": dfwatch("train", "eval", "--cache", str(cache), "--head", str(run / "head.pt"), "--out", str(report)),
        "export": dfwatch("train", "export", "--bundle", str(small_bundle), "--head", str(run / "head.pt"),
                          "--out", str(exported), "--report", str(report / "report.json"), "--id", "test-trained"),
    }
    for name, r in steps.items():
        assert r.returncode == 0, f"{name}: {r.stderr[-2000:]}"
    return {"cache": cache, "run": run, "report": report, "bundle": exported, "steps": steps}


def test_extract_caches_one_file_per_video_with_provenance(chain, dataset, small_bundle):
    counts = json.loads(chain["steps"]["extract"].stdout.splitlines()[-1])
    assert counts == {"videos": 10, "skipped": 0, "extracted": 10, "invalid": 0}
    video = index_dataset(dataset, "test")[0]
    entry = read_entry(cache_path(chain["cache"], video))
    meta = entry["meta"]
    assert meta["valid"] and meta["source"] == str(video.path) and meta["split"] == "test"
    assert set(meta["models"]) == {"style", "content"} and meta["spacing_s"] > 0
    assert entry["style"].shape == (8, 1, 512) and entry["content"].shape == (2, 2048)
    assert entry["frame_indices"].tolist() == sample_indices(24, 8) and entry["found"].all()


def test_extraction_resumes_and_records_bad_videos(chain, dataset, small_bundle, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(chain["cache"], cache)
    victim = cache_path(cache, index_dataset(dataset, "train")[0])
    victim.unlink()  # as if the first run had been interrupted before this video
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "real" / "train-corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 5000)
    split = json.loads((broken / "split.json").read_text())
    split["train"].append("real/train-corrupt.mp4")
    (broken / "split.json").write_text(json.dumps(split))
    r = dfwatch("train", "extract", "--bundle", str(small_bundle), "--dataset", str(broken), "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == {"videos": 11, "skipped": 9, "extracted": 1, "invalid": 1}
    assert victim.is_file()
    bad = read_entry(next((cache / "real").glob("train-corrupt-*.npz")))["meta"]
    assert not bad["valid"] and "cannot open" in bad["error"]


def test_fit_is_deterministic_and_logs(chain, tmp_path):
    r = dfwatch("train", "fit", "--cache", str(chain["cache"]), "--out", str(tmp_path / "again"), "--epochs", "6",
                "--gru-hidden", "64", "--width", "32")
    assert r.returncode == 0, r.stderr
    a = torch.load(chain["run"] / "head.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "head.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((chain["run"] / "history.json").read_text())
    lrs = [h["lr"] for h in history["history"]]
    assert lrs[0] == pytest.approx(1e-4) and lrs[1] < lrs[0]  # cosine annealing, per epoch
    assert list((chain["run"] / "tensorboard").glob("events.out.tfevents.*"))
    assert history["summary"]["frame_spacing_s"] > 0


def test_early_stopping_keeps_the_best_weights(chain, tmp_path):
    from training.features import load_features
    from training.fit import FitConfig, fit

    summary = fit(load_features(chain["cache"], "train"), load_features(chain["cache"], "val"),
                  FitConfig(epochs=50, patience=2, lr=5e-3, head={"gru_hidden": 32, "width": 16}), tmp_path)
    assert summary["epochs_run"] < 50 and summary["epochs_run"] == summary["best_epoch"] + 3
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    assert summary["best_val_loss"] == pytest.approx(min(h["val_loss"] for h in history))


def test_eval_writes_report_and_plots(chain):
    report = json.loads((chain["report"] / "report.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "eer", "average_precision", "confusion_matrix"):
        assert key in report
    assert report["videos"] == 4 and len(report["scores"]) == 4
    for plot in ("roc.png", "confusion.png", "scores.png", "training.png"):
        assert (chain["report"] / plot).stat().st_size > 1000


def test_exported_bundle_records_training(chain):
    manifest = json.loads((chain["bundle"] / "manifest.json").read_text())
    assert manifest["trained"] and manifest["id"] == "test-trained"
    spacing = json.loads((chain["run"] / "history.json").read_text())["summary"]["frame_spacing_s"]
    assert manifest["window"]["fps"] == pytest.approx(1 / spacing)
    assert manifest["window"]["frames"] == 8 and manifest["training"]["eval"]["videos"] == 4
    assert set(manifest["onnx"]) == {"style", "content", "head"}


def test_train_serve_parity(chain, dataset, tmp_path):
    """The exported bundle, served by the daemon on a test video's sampled frames, gives the
    score `train eval` reported for that video."""
    video = index_dataset(dataset, "test")[0]
    expected = json.loads((chain["report"] / "report.json").read_text())["scores"][video.key]
    (verdict,) = serve_frames(chain["bundle"], sampled_frames(chain["cache"], video), "v", tmp_path, 1)
    assert verdict.seq_first == 0 and verdict.seq_last == 7 and not verdict.untrained
    assert abs(verdict.score - expected) < 1e-5, (verdict.score, expected)


def test_clear_errors_for_wrong_inputs(tmp_path, small_bundle):
    (tmp_path / "empty").mkdir()
    r = dfwatch("train", "extract", "--bundle", str(small_bundle), "--dataset", str(tmp_path / "empty"),
                "--cache", str(tmp_path / "c"))
    assert r.returncode == 1 and r.stderr.startswith("dfwatch train extract: ") and "not a dataset root" in r.stderr
    assert "Traceback" not in r.stderr
    r = dfwatch("train", "fit", "--cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert r.returncode == 1 and "no feature cache here" in r.stderr
