"""TensorRT: engine naming and rebuild decisions everywhere; building and running where a GPU is."""
from __future__ import annotations

import importlib.util
import subprocess

import pytest
import torch

from conftest import DFWATCH, REPO
from engines.bundles.bundle import load_bundle
from engines.backends.tensorrt import (TensorRTSettings, cache_dir, engine_name, engine_path, input_profiles, needs_build, part_precision,
                         stale_engines)

HAS_TRT_GPU = torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is not None
needs_gpu = pytest.mark.skipif(not HAS_TRT_GPU, reason="needs an NVIDIA GPU with TensorRT (pip install '.[gpu]')")


def test_engine_name_encodes_everything_that_determines_the_engine():
    base = engine_name("style", "ab" * 32, "fp16", "10.13.3", "NVIDIA H100 80GB HBM3")
    assert base == "style-abababababababab-fp16-trt10.13.3-nvidia-h100-80gb-hbm3.engine"
    variants = [engine_name("style", "cd" * 32, "fp16", "10.13.3", "NVIDIA H100 80GB HBM3"),
                engine_name("style", "ab" * 32, "int8", "10.13.3", "NVIDIA H100 80GB HBM3"),
                engine_name("style", "ab" * 32, "fp16", "10.14.0", "NVIDIA H100 80GB HBM3"),
                engine_name("style", "ab" * 32, "fp16", "10.13.3", "NVIDIA L4"),
                engine_name("head", "ab" * 32, "fp16", "10.13.3", "NVIDIA H100 80GB HBM3")]
    assert len({base, *variants}) == 6
    with pytest.raises(ValueError):
        engine_name("style", "ab" * 32, "fp32", "10", "gpu")


def test_rebuild_when_the_onnx_file_changes(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    settings = TensorRTSettings(cache_dir=str(tmp_path))
    path = engine_path(bundle, "style", settings, "10.13.3", "NVIDIA H100")
    assert path.parent == tmp_path and needs_build(path)
    path.write_bytes(b"engine")
    assert not needs_build(path)  # same ONNX, precision, TensorRT and GPU: reuse
    bundle.manifest.onnx["style"] = bundle.manifest.onnx["style"].model_copy(update={"sha256": "f" * 64})
    new = engine_path(bundle, "style", settings, "10.13.3", "NVIDIA H100")
    assert new != path and needs_build(new)  # re-exported ONNX: a new engine is built
    assert stale_engines(tmp_path, "style", new) == [path]
    assert needs_build(engine_path(bundle, "style", settings, "10.14.0", "NVIDIA H100"))
    assert needs_build(engine_path(bundle, "style", TensorRTSettings(cache_dir=str(tmp_path), precision="int8"),
                                   "10.13.3", "NVIDIA H100"))


def test_engine_cache_goes_where_the_service_may_write(bundle_dir, tmp_path, monkeypatch):
    bundle = load_bundle(bundle_dir)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))  # systemd's CacheDirectory=dfwatch
    assert cache_dir(bundle, TensorRTSettings()) == tmp_path / "cache" / "tensorrt"
    assert cache_dir(bundle, TensorRTSettings(cache_dir=str(tmp_path / "mine"))) == tmp_path / "mine"
    monkeypatch.delenv("CACHE_DIRECTORY")
    assert cache_dir(bundle, TensorRTSettings()) == bundle.root / "tensorrt"  # a writable bundle


def test_optimisation_profiles_vary_only_the_batch(bundle_dir):
    bundle = load_bundle(bundle_dir)
    s = TensorRTSettings(min_batch=1, opt_batch=4, max_batch=8)
    assert input_profiles(bundle, "style", s) == {"images": ((1, 3, 256, 256), (4, 3, 256, 256), (8, 3, 256, 256))}
    head = input_profiles(bundle, "head", s)
    assert head["style"][2] == (8, 32, 1, 512) and head["content"][0] == (1, 2, 2048)


def test_dldfd_engine_profile_and_int8_only_on_the_per_frame_model(dldfd_bundle, bundle_dir):
    dldfd, stylegru = load_bundle(dldfd_bundle), load_bundle(bundle_dir)
    s = TensorRTSettings(min_batch=1, opt_batch=4, max_batch=8, precision="int8")
    assert input_profiles(dldfd, "frame", s) == {"faces": ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))}
    assert part_precision(dldfd, "frame", s).precision == "int8"
    assert part_precision(stylegru, "style", s).precision == "int8"
    assert [part_precision(stylegru, p, s).precision for p in ("content", "head")] == ["fp16", "fp16"]
    assert engine_path(dldfd, "frame", s, "10.13.3", "NVIDIA L4").name.startswith("frame-")


@pytest.mark.skipif(HAS_TRT_GPU, reason="checks the message on machines without a GPU")
def test_build_without_a_gpu_says_so_in_one_line(bundle_dir):
    r = subprocess.run(DFWATCH + ["engines", "build", str(bundle_dir)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no NVIDIA GPU is visible" in r.stderr
    r = subprocess.run([str(REPO / "scripts" / "gpu-check.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "needs an NVIDIA GPU" in r.stderr


@needs_gpu
def test_tensorrt_fp16_matches_torch(bundle_dir, tmp_path):
    """Builds all engines and checks them against torch (max error <= 1e-2 of max|torch|)."""
    from daemon.benchmarks.gpu_check import main

    assert main([str(bundle_dir)]) == 0
