"""Checkpoint loading: official layouts, safe loading, and one clear error per bad file."""
from __future__ import annotations

import argparse
import subprocess

import pytest
import torch

from conftest import DFWATCH
from engines.models.checkpoints import (CheckpointError, identify, load_head, load_psp_encoder, load_slow_r50,
                                 save_head)
from engines.models.stylegru import StyleGRUConfig, StyleGRUHead


@pytest.fixture(scope="module")
def slow_r50_ckpt(official_checkpoints):
    return torch.load(official_checkpoints("slow_r50", 0), weights_only=True)


def test_slow_r50_accepts_a_bare_state_dict_with_module_prefix(tmp_path, slow_r50_ckpt):
    path = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in slow_r50_ckpt["model_state"].items()}, path)
    model = load_slow_r50(path)
    assert not model.training
    assert model(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 2048)


def test_truncated_file(tmp_path, official_checkpoints):
    src = official_checkpoints("slow_r50", 0).read_bytes()
    path = tmp_path / "truncated.pyth"
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pyth: truncated, corrupt or not a PyTorch checkpoint"):
        load_slow_r50(path)


def test_not_a_checkpoint_at_all(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt: .*(truncated|corrupt|not a PyTorch)"):
        load_psp_encoder(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_psp_encoder(tmp_path / "missing.pt")


def test_psp_checkpoint_given_to_slow_r50_loader(official_checkpoints):
    path = official_checkpoints("psp", 0)
    with pytest.raises(CheckpointError) as e:
        load_slow_r50(path)
    assert str(e.value) == (f"{path}: this is a pSp checkpoint, not slow_r50 (SLOW_8x8_R50.pyth); "
                            "pass it as the pSp encoder instead")


def test_slow_r50_given_to_psp_loader(official_checkpoints):
    path = official_checkpoints("slow_r50", 0)
    with pytest.raises(CheckpointError, match=r"not a pSp checkpoint: expected a dict with 'state_dict'"):
        load_psp_encoder(path)


def test_missing_unexpected_and_shape_mismatch_are_named(tmp_path, slow_r50_ckpt):
    sd = dict(slow_r50_ckpt["model_state"])
    del sd["blocks.0.conv.weight"]
    sd["blocks.9.extra"] = torch.zeros(1)
    sd["blocks.5.proj.weight"] = torch.zeros(10, 2048)
    path = tmp_path / "mangled.pyth"
    torch.save({"model_state": sd}, path)
    with pytest.raises(CheckpointError) as e:
        load_slow_r50(path)
    assert str(e.value) == (f"{path}: not a slow_r50 checkpoint: 1 missing keys (blocks.0.conv.weight); "
                            "1 unexpected keys (blocks.9.extra); first shape mismatch: blocks.5.proj.weight is "
                            "(10, 2048), expected (400, 2048)")


def psp_small(official_checkpoints) -> dict:
    return torch.load(official_checkpoints("psp", 0), weights_only=True, mmap=True)


def test_pickle_that_needs_trust(tmp_path, official_checkpoints):
    """Older pSp files store opts as an argparse.Namespace, which weights_only refuses."""
    ckpt = psp_small(official_checkpoints)
    ckpt["opts"] = argparse.Namespace(**ckpt["opts"])
    path = tmp_path / "psp_namespace_opts.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        load_psp_encoder(path)
    assert "safe loading (weights_only=True) refuses" in str(e.value) and "trust=True" in str(e.value)
    model = load_psp_encoder(path, trust=True)
    assert model.start_from_latent_avg and model.levels == (9,)


def test_latent_avg_shapes_and_start_from_latent_avg(tmp_path, official_checkpoints):
    ckpt = psp_small(official_checkpoints)
    x = torch.zeros(1, 3, 256, 256)
    reference = load_psp_encoder(official_checkpoints("psp", 0))
    with torch.no_grad():
        codes = reference.encoder(x)
        torch.testing.assert_close(reference(x), codes + ckpt["latent_avg"][9])
    ckpt["latent_avg"] = ckpt["latent_avg"][9].clone()  # (512,) as W-space pSp variants store it
    torch.save(ckpt, tmp_path / "w.pt")
    with torch.no_grad():
        torch.testing.assert_close(load_psp_encoder(tmp_path / "w.pt")(x), codes + ckpt["latent_avg"])
    ckpt["opts"] = {k: v for k, v in ckpt["opts"].items() if k != "start_from_latent_avg"}
    torch.save(ckpt, tmp_path / "no_avg.pt")
    with torch.no_grad():
        torch.testing.assert_close(load_psp_encoder(tmp_path / "no_avg.pt")(x), codes)


def test_head_round_trip_with_safe_loading(tmp_path):
    torch.manual_seed(0)
    head = StyleGRUHead(StyleGRUConfig(gru_hidden=64, width=32, mlp_dim=64, fc_hidden=16)).eval()
    save_head(tmp_path / "head.pt", head, extra={"epochs": 3})
    loaded = load_head(tmp_path / "head.pt")
    s, c = torch.randn(2, 32, 1, 512), torch.randn(2, 2, 2048)
    with torch.no_grad():
        torch.testing.assert_close(loaded(s, c), head(s, c))
    with pytest.raises(CheckpointError, match="not a dfwatch head file"):
        load_head(_write(tmp_path / "x.pt", {"a": torch.zeros(1)}))


def _write(path, obj):
    torch.save(obj, path)
    return path


def test_identify_and_weights_check_command(tmp_path, official_checkpoints):
    info = identify(official_checkpoints("slow_r50", 0))
    assert info["kind"] == "slow_r50" and info["loads"] and 32e6 < info["parameters"] < 33e6
    info = identify(official_checkpoints("psp", 0))
    assert info["kind"] == "pSp encoder" and info["loads"] and round(info["parameters"] / 1e6, 1) == 267.1
    r = subprocess.run(DFWATCH + ["weights", "check", str(official_checkpoints("slow_r50", 0))],
                       capture_output=True, text=True)
    assert r.returncode == 0 and ": slow_r50, 32." in r.stdout and "M parameters, loads" in r.stdout
    junk = _write(tmp_path / "junk.pt", {"weight": torch.zeros(3, 3)})
    r = subprocess.run(DFWATCH + ["weights", "check", str(junk)], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown" in r.stdout and "does NOT load" in r.stdout
    assert "Traceback" not in r.stderr


def test_weights_sources_command():
    r = subprocess.run(DFWATCH + ["weights", "sources"], capture_output=True, text=True)
    assert r.returncode == 0
    for name in ("psp_ffhq_encode.pt", "SLOW_8x8_R50.pyth", "non-commercial", "Apache-2.0"):
        assert name in r.stdout
