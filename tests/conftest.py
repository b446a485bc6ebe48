"""Shared test fixtures: where the footage, the test data (tests/data, its README) and the repo live.
Nothing outside the checkout is read but the footage setup.sh fetches into .cache/."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO / ".cache" / "footage"
DATA = REPO / "tests" / "data"
PARITY = DATA / "parity"              # reference outputs of the official implementations
MANIFESTS = DATA / "checkpoints"      # the official checkpoints' key manifests
DFWATCH = [sys.executable, "-m", "engines.cli"]  # the console script, with this interpreter


@pytest.fixture(scope="session")
def footage() -> Path:
    if not (FOOTAGE / "franck.mp4").exists():
        pytest.fail("test footage missing: run scripts/setup.sh (it fetches .cache/footage)")
    return FOOTAGE


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A folder for one test module's shared fixtures (a training chain, a quantized bundle), removed
    when the module ends unless one of its tests failed: kept for a whole run they add up to gigabytes."""
    failed_before = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def make_checkpoint():
    """The parity generator (tests/helpers/make_checkpoint.py) as a module."""
    from helpers import make_checkpoint

    return make_checkpoint


@pytest.fixture(scope="session")
def official_checkpoints(tmp_path_factory, make_checkpoint):
    """checkpoint(kind, seed) -> path of an official-format file (psp: .pt, slow_r50: .pyth),
    generated once per test session (psp: ~10 s and 1.2 GB each)."""
    import torch

    folder = tmp_path_factory.mktemp("checkpoints")
    made: dict = {}
    manifests = MANIFESTS

    def checkpoint(kind: str, seed: int = 0) -> Path:
        if (kind, seed) not in made:
            if kind == "psp":
                ckpt = make_checkpoint.build_psp(seed, manifests / "psp_encoder_keys.tsv",
                                                 manifests / "psp_decoder_keys.tsv")
                path = folder / f"psp_seed{seed}.pt"
            else:
                ckpt = make_checkpoint.build_slow_r50(seed, manifests / "slow_r50_keys.tsv")
                path = folder / f"slow_r50_seed{seed}.pyth"
            torch.save(ckpt, path)
            made[(kind, seed)] = (path, make_checkpoint.digest(ckpt))
        return made[(kind, seed)][0]

    checkpoint.digest = lambda kind, seed=0: (checkpoint(kind, seed), made[(kind, seed)][1])[1]
    return checkpoint


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, official_checkpoints) -> Path:
    """A bundle from the seed-0 official-format checkpoints with a fresh (untrained) head,
    exported to ONNX. Session-wide and read-only: copy it before changing anything."""
    from engines.families.stylegru import assemble
    from engines.bundles.export import export_bundle

    root = tmp_path_factory.mktemp("bundle") / "seed0"
    assemble(root, official_checkpoints("psp", 0), official_checkpoints("slow_r50", 0))
    export_bundle(root)
    return root


@pytest.fixture(scope="session")
def franck_frames(footage):
    """The first 64 frames of franck.mp4 (BGR), decoded with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(footage / "franck.mp4"), cv2.CAP_FFMPEG)
    frames = []
    while len(frames) < 64:
        ok, frame = cap.read()
        assert ok, "franck.mp4 ended early"
        frames.append(frame)
    cap.release()
    return frames


SMALL = dict(frames=8, clip_frames=4, style_size=128, content_size=64, fps=4.0)


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, official_checkpoints) -> Path:
    """A fast bundle for daemon tests: the seed-0 official-format weights with small inputs
    (T = 8 frames, 4-frame clips, 128-px style and 64-px content inputs), exported to ONNX."""
    from engines.families.stylegru import assemble
    from engines.bundles.export import export_bundle

    root = tmp_path_factory.mktemp("small") / "bundle"
    assemble(root, official_checkpoints("psp", 0), official_checkpoints("slow_r50", 0), bundle_id="test-small",
             **SMALL)
    export_bundle(root)
    return root


@pytest.fixture(scope="session")
def resnet50_checkpoint(tmp_path_factory, make_checkpoint) -> Path:
    """A torchvision ResNet-50 ImageNet file (`resnet50-*.pth` layout: a plain state dict),
    tensors from the shared generator's value rules over torchvision's own key list."""
    import torch
    import torchvision

    with torch.device("meta"):
        rows = [(k, tuple(v.shape)) for k, v in torchvision.models.resnet50().state_dict().items()]
    path = tmp_path_factory.mktemp("resnet50") / "resnet50-seed0.pth"
    torch.save(make_checkpoint.make_state_dict(rows, 0), path)
    return path


DLDFD_SMALL = dict(frames=8, fps=4.0, input_size=64)


@pytest.fixture(scope="session")
def dldfd_bundle(tmp_path_factory, resnet50_checkpoint) -> Path:
    """A fast DLDFD bundle for daemon and training tests: the seeded torchvision-format ResNet-50,
    64-px faces (the paper's 224 in production), T = 8, exported to ONNX."""
    from engines.families.dldfd import assemble as assemble_dldfd
    from engines.bundles.export import export_bundle

    root = tmp_path_factory.mktemp("dldfd") / "bundle"
    assemble_dldfd(root, resnet50=resnet50_checkpoint, bundle_id="test-dldfd", **DLDFD_SMALL)
    export_bundle(root)
    return root


@pytest.fixture(scope="session")
def icpr_weights(tmp_path_factory, make_checkpoint) -> Path:
    """An ICPR 2020 EfficientNet-B4 file in the published layout (`*_bestval-*.pth`: the network
    under 'net'), the parity generator's seed 0: random, not the published weights."""
    import torch

    path = tmp_path_factory.mktemp("icpr") / "EfficientNetB4_seed0_bestval.pth"
    torch.save(make_checkpoint.build_icpr(0, MANIFESTS / "icpr_effnetb4_keys.tsv"), path)
    return path


@pytest.fixture(scope="session")
def icpr_bundle(tmp_path_factory, icpr_weights) -> Path:
    """An icpr-b4 bundle from those weights (T = 8 at 4 fps for fast tests; 224-px faces as
    published), exported to ONNX. Made from a weight file, it is a trained bundle."""
    from engines.bundles.export import export_bundle
    from engines.families.icpr import B4, assemble

    root = tmp_path_factory.mktemp("icpr-bundle") / "bundle"
    assemble(B4, root, icpr_weights, frames=8, fps=4.0, bundle_id="test-icpr-b4")
    export_bundle(root)
    return root


# ---- the synthetic set and a detector trained on it (tests/e2e: tracks, calibration) --------------

@pytest.fixture(scope="session")
def gallery(tmp_path_factory, footage):
    """The synthetic set (6 real and 6 swapped training clips, 2 + 2 for validation) and a 4-second
    gallery whose bottom-right tile (3) is swapped; its tiles' places in gallery.json."""
    root = tmp_path_factory.mktemp("gallery") / "set"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_dataset.py"), str(root), "--train", "6",
                        "--val", "2", "--test", "0", "--frames", "32", "--gallery", "--gallery-frames", "96"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads((root / "gallery.json").read_text())
    assert info["fake_tile"] == 3 and [t["fake"] for t in info["tiles"]] == [False, False, False, True]
    return root


@pytest.fixture(scope="session")
def detector(gallery, dldfd_bundle, tmp_path_factory):
    """A DLDFD bundle trained on the synthetic set (extract, 8 epochs of fit, eval on the validation
    split, export with its report: the bundle has operating points)."""
    work = tmp_path_factory.mktemp("gallery-detector")
    steps = [("train", "extract", "--bundle", str(dldfd_bundle), "--dataset", str(gallery), "--splits", "train,val",
              "--cache", str(work / "cache")),
             ("train", "fit", "--cache", str(work / "cache"), "--bundle", str(dldfd_bundle), "--out",
              str(work / "run"), "--epochs", "8", "--batch-size", "16"),
             ("train", "eval", "--cache", str(work / "cache"), "--split", "val", "--model",
              str(work / "run" / "model.pt"), "--out", str(work / "eval")),
             ("train", "export", "--bundle", str(dldfd_bundle), "--model", str(work / "run" / "model.pt"), "--out",
              str(work / "bundle"), "--report", str(work / "eval" / "report.json"), "--id", "gallery-trained")]
    for step in steps:
        r = subprocess.run(DFWATCH + list(step), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{step[1]}: {r.stderr[-2000:]}"
    return work / "bundle"
