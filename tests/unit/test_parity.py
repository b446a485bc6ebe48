"""The official networks: strict loading of official-format checkpoints and numerical parity with
the outputs of pixel2style2pixel and pytorchvideo (tests/data/README.md)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import PARITY
from engines.models.checkpoints import load_psp_encoder, load_slow_r50

SEEDS = [0, 1]
DIGESTS = {  # tests/data/README.md
    ("psp", 0): "6cd7e3ea88576d24a4d8050bd34057f727154dcd132602451e3abbb4d3bc30ad",
    ("psp", 1): "51d0f1a6eda39b97827d4cdfda29533bef484a44d505c0c2089d15cc9b26cabb",
    ("slow_r50", 0): "8b81fce9bdc851a3b184e962fdd5baac6ba9b1684e5cf05e23ae8a7096ef7ece",
    ("slow_r50", 1): "b87b548e48586394257ad41d459c3c9f4f0423cec3726ba2deffe26b14ff8365",
}
INPUT_HASHES = {
    ("x", 0): "73a2544ab3ce5e71cc778081ea2cf2a976b9a51762313cf536feaca17e9ec5cc",
    ("x", 1): "37cf5842303e9a96eea365bb4518316dfdb9965f6147c1f4f27c86a65b992617",
    ("v16", 0): "249c9da66e394d3ceaf2f173be4d558ac4d1b515a66d407278c80ef4933cca73",
    ("v16", 1): "608b9fdfec0e5945869e77092ad7ced31cea2b388c6ef7d67666fd582a7e7138",
    ("v8", 0): "e4eff3f6e8cd76a7f713fac925bab1310963fc84edd5fabb01e00a32554db966",
    ("v8", 1): "10f04f4d1344d6ece199dbfecf36f08767948ba9e584175b2ec21c67ec7782b7",
}
SHAPES = {"x": (2, 3, 256, 256), "v16": (2, 3, 16, 112, 112), "v8": (1, 3, 8, 256, 256)}
GEN_SEEDS = {"x": 1234, "v16": 4321, "v8": 8642}


def parity_input(name: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(GEN_SEEDS[name] + seed)
    return torch.rand(*SHAPES[name], generator=g) * 2 - 1


def fixture(name: str, seed: int, f64: bool = False) -> torch.Tensor:
    suffix = "_f64" if f64 else ""
    return torch.from_numpy(np.load(PARITY / f"{name}_seed{seed}{suffix}.npy"))


def assert_parity(out: torch.Tensor, ref: torch.Tensor, rel: float):
    """max|out - ref| <= rel * max|ref| (the parity README's measure)."""
    assert out.shape == ref.shape
    err = (out.double() - ref.double()).abs().max().item() / ref.abs().max().item()
    assert err <= rel, f"max error {err:.3g} x max|ref| exceeds {rel:g}"


@pytest.mark.parametrize("name,seed", sorted(INPUT_HASHES))
def test_parity_inputs_are_the_fixture_inputs(name, seed):
    assert hashlib.sha256(parity_input(name, seed).numpy().tobytes()).hexdigest() == INPUT_HASHES[(name, seed)]


@pytest.mark.parametrize("kind,seed", sorted(DIGESTS))
def test_generated_checkpoints_are_the_fixture_checkpoints(official_checkpoints, kind, seed):
    assert official_checkpoints.digest(kind, seed) == DIGESTS[(kind, seed)]


@pytest.mark.parametrize("seed", SEEDS)
def test_slow_r50_features_and_logits_match_pytorchvideo(official_checkpoints, seed):
    model = load_slow_r50(official_checkpoints("slow_r50", seed))
    with torch.no_grad():
        assert_parity(model(parity_input("v16", seed)), fixture("slow_r50_feat16x112", seed), 1e-4)
        assert_parity(model.logits(parity_input("v8", seed)), fixture("slow_r50_logits8x256", seed), 1e-4)
        model.double()
        assert_parity(model(parity_input("v16", seed).double()),
                      fixture("slow_r50_feat16x112", seed, f64=True), 1e-10)


@pytest.fixture(scope="module")
def full_psp(official_checkpoints):
    return {seed: load_psp_encoder(official_checkpoints("psp", seed), levels=range(18)) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_psp_codes_match_pixel2style2pixel(full_psp, seed):
    model = full_psp[seed]
    x = parity_input("x", seed)
    with torch.no_grad():
        assert_parity(model(x), fixture("psp_codes_plus_avg", seed), 1e-4)
        assert_parity(model.encoder(x), fixture("psp_codes", seed), 1e-4)


def test_psp_float64_parity_is_exact(full_psp):
    model = full_psp[0]
    with torch.no_grad():
        model.double()
        try:
            out = model(parity_input("x", 0).double())
        finally:
            model.float()
    assert_parity(out, fixture("psp_codes_plus_avg", 0, f64=True), 1e-10)


def count_flops(model, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def test_level9_encoder_equals_full_encoder_at_half_the_flops(full_psp, official_checkpoints):
    level9 = load_psp_encoder(official_checkpoints("psp", 0), levels=(9,))
    assert sorted(level9.encoder.styles.keys()) == ["9"] and level9.levels == (9,)
    x = parity_input("x", 0)[:1]
    with torch.no_grad():
        full = full_psp[0](x)
        only9 = level9(x)
    assert only9.shape == (1, 1, 512)
    torch.testing.assert_close(only9[:, 0], full[:, 9], rtol=0, atol=1e-6)
    ratio = count_flops(level9, x) / count_flops(full_psp[0], x)
    assert ratio <= 0.51, f"level-9 path costs {ratio:.1%} of the full encoder"


def test_coarse_levels_skip_the_pyramid(full_psp, official_checkpoints):
    coarse = load_psp_encoder(official_checkpoints("psp", 0), levels=(0, 2))
    assert not hasattr(coarse.encoder, "latlayer1") and not hasattr(coarse.encoder, "latlayer2")
    x = parity_input("x", 0)[:1]
    with torch.no_grad():
        torch.testing.assert_close(coarse(x), full_psp[0](x)[:, [0, 2]], rtol=0, atol=1e-6)
