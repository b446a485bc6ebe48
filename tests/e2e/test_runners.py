"""Runners: ONNX Runtime computes what torch computes, for every part, on random and real faces."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from conftest import DFWATCH
from engines.bundles.bundle import load_bundle
from engines.errors import BundleError
from engines.bundles.export import example_inputs
from engines.families.stylegru import CONTENT_NORM, STYLE_NORM
from engines.pipeline.preprocess import (CropSpec, FaceDetector, content_clip, normalize)
from helpers.crops import crop_sequence
from engines.backends import OnnxRunner, TorchRunner, choose_backend, cores, open_runners, thread_count


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


@pytest.fixture(scope="module")
def runners(bundle):
    return ({p: TorchRunner(p, bundle.module(p)) for p in ("style", "content", "head")},
            {p: OnnxRunner(p, bundle.onnx_path(p)) for p in ("style", "content", "head")})


@pytest.fixture(scope="module")
def real_inputs(franck_frames):
    frames = franck_frames[:16]
    crops, found = crop_sequence(frames, FaceDetector().detect(frames), CropSpec())
    assert found.all()
    return crops


@pytest.mark.parametrize("part", ["style", "content", "head"])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch_on_random_inputs(bundle, runners, part, batch):
    inputs = [x.numpy() for x in example_inputs(bundle, part, batch)]
    ref = runners[0][part].run(*inputs)
    out = runners[1][part].run(*inputs)
    assert out.shape == ref.shape and out.shape[0] == batch
    assert rel_err(out, ref) <= 1e-4


def test_onnxruntime_matches_torch_on_real_faces(runners, real_inputs):
    torch_r, ort_r = runners
    x = normalize(real_inputs[:2], STYLE_NORM)
    codes = torch_r["style"].run(x)
    assert codes.shape == (2, 1, 512) and rel_err(ort_r["style"].run(x), codes) <= 1e-4
    clip = content_clip(real_inputs, CONTENT_NORM)[None]
    feats = torch_r["content"].run(clip)
    assert feats.shape == (1, 2048) and rel_err(ort_r["content"].run(clip), feats) <= 1e-4
    style = np.repeat(codes[:1][:, None], 32, axis=1) + np.random.default_rng(0).normal(0, 0.05, (1, 32, 1, 512))
    content = np.repeat(feats[:, None], 2, axis=1)
    p = torch_r["head"].run(style.astype(np.float32), content)
    assert 0 < p[0] < 1 and rel_err(ort_r["head"].run(style.astype(np.float32), content), p) <= 1e-4


def test_torch_runner_accepts_tensors_and_arrays(bundle, runners):
    x = example_inputs(bundle, "head", 2)
    a = runners[0]["head"].run(*x)
    b = runners[0]["head"].run(*[t.numpy() for t in x])
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32


def test_backend_choice_without_a_gpu(bundle, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only machine's choice; this machine has a GPU")
    choice = choose_backend("auto", "auto", bundle)
    assert (choice.backend, choice.device) == ("onnxruntime", "cpu")
    with pytest.raises(BundleError, match="backend tensorrt needs an NVIDIA GPU"):
        choose_backend("tensorrt", "auto", bundle)
    with pytest.raises(BundleError, match="no GPU is visible"):
        choose_backend("torch", "cuda", bundle)
    runners, choice = open_runners(bundle, "torch", "cpu", threads=1)
    assert choice.backend == "torch" and set(runners) == {"style", "content", "head"}


def test_thread_counts_never_exceed_the_cores():
    assert thread_count(0) == cores()
    assert thread_count(10_000) == cores()
    assert thread_count(1) == 1


def test_export_command_writes_and_records_onnx(bundle_dir, tmp_path):
    import shutil

    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    (dst / "onnx" / "head.onnx").unlink()
    r = subprocess.run(DFWATCH + ["engines", "export", str(dst), "--parts", "head"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    entry = load_bundle(dst).manifest.as_json()["onnx"]["head"]
    assert (dst / entry["path"]).is_file() and entry["inputs"] == ["style", "content"]
