"""The ICPR 2020 detectors (EfficientNet-B4, with and without attention): checkpoints in the
published layout load strictly and safely, and dfwatch's network computes what the official one
computed for them (tests/data/README.md), on torch and on ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MANIFESTS, PARITY
from engines.models.checkpoints import CheckpointError, identify, load_icpr

MODELS = {"icpr_effnetb4": "b4", "icpr_effnetb4att": "b4att"}
DIGESTS = {  # tests/data/README.md
    ("icpr_effnetb4", 0): "60cfba183c9bb7eec560fa540059e55286720c28bc19463906759b8f86963c57",
    ("icpr_effnetb4", 1): "cb51b5aa1226af704138014e8e7dfec3c3da18a7344af4c881e3e8207bc36135",
    ("icpr_effnetb4att", 0): "1fd507660644dd19abc70ed7ea3756f696c44e81f535d8a73f09a671824cf04f",
    ("icpr_effnetb4att", 1): "e9f708ca266e15d95866802277491fdc5c18e3bd34436636354bb02f5e41e1c1",
}
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


class LogitAndFeatures(torch.nn.Module):
    """What the fixtures hold, as one module to export: the logit and the pooled features."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, faces):
        features = self.net.features(faces)
        return self.net.classifier(features).squeeze(-1), features


def parity_input(seed: int) -> np.ndarray:
    """(4, 3, 224, 224) RGB in [0, 1]: two noise images (`torch.rand`, seed 2468 + S) and the two
    real faces kept in tests/data/parity/icpr_faces.npy, as the fixtures were made."""
    noise = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2468 + seed)).numpy()
    return np.concatenate([noise, np.load(PARITY / "icpr_faces.npy")])


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max|out - ref| / max|ref|, the parity README's measure."""
    return float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("model,seed", sorted(DIGESTS))
def test_official_layout_loads_safely_and_matches_the_official_network(model, seed, make_checkpoint, tmp_path):
    from engines.bundles.export import export_module
    from engines.backends import OnnxRunner

    ckpt = make_checkpoint.build_icpr(seed, MANIFESTS / f"{model}_keys.tsv")
    assert make_checkpoint.digest(ckpt) == DIGESTS[(model, seed)]
    path = tmp_path / f"{model}_seed{seed}.pth"
    torch.save(ckpt, path)
    net = load_icpr(path)  # weights_only=True, strict: every key and shape of the file used
    assert net.variant == MODELS[model]
    fixtures = PARITY
    x = parity_input(seed)
    faces = ((x - MEAN) / STD).astype(np.float32)  # RGB in [0, 1], ImageNet mean and std
    ref_logit = np.load(fixtures / f"{model}_logit_seed{seed}.npy").ravel()
    ref_features = np.load(fixtures / f"{model}_features_seed{seed}.npy")
    with torch.no_grad():
        logit, features = (t.numpy() for t in LogitAndFeatures(net)(torch.from_numpy(faces)))
    assert relative_error(logit, ref_logit) <= 1e-4 and relative_error(features, ref_features) <= 1e-4
    onnx = tmp_path / "net.onnx"
    export_module(LogitAndFeatures(net), (faces,), onnx, ("faces",), ("logit", "features"),
                  {"faces": {0: "batch"}, "logit": {0: "batch"}, "features": {0: "batch"}})
    runner = OnnxRunner("frame", onnx)
    ort_logit, ort_features = runner.session.run(None, {"faces": faces})
    assert relative_error(ort_logit, ref_logit) <= 1e-4 and relative_error(ort_features, ref_features) <= 1e-4
    info = identify(path)
    assert info["loads"] and info["kind"].startswith("ICPR 2020 EfficientNet-B4")


def test_float64_parity_is_exact(make_checkpoint, tmp_path):
    ckpt = make_checkpoint.build_icpr(0, MANIFESTS / "icpr_effnetb4att_keys.tsv")
    torch.save(ckpt, tmp_path / "b4att.pth")
    net = load_icpr(tmp_path / "b4att.pth").double()
    fixtures = PARITY
    x = parity_input(0)
    with torch.no_grad():  # the float64 fixture ran on the float32-normalised input
        logit = net(torch.from_numpy((x - MEAN) / STD).double()).numpy()
    assert relative_error(logit, np.load(fixtures / "icpr_effnetb4att_logit_seed0_f64.npy").ravel()) <= 1e-10


def test_other_files_are_refused_with_one_line(make_checkpoint, tmp_path):
    ckpt = make_checkpoint.build_icpr(0, MANIFESTS / "icpr_effnetb4_keys.tsv")
    del ckpt["net"]["classifier.bias"]
    torch.save(ckpt, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"not a ICPR 2020 EfficientNet-B4 checkpoint: 1 missing keys "
                                              r"\(classifier.bias\)"):
        load_icpr(tmp_path / "cut.pth")
    torch.save({"net": {"efficientnet._conv_stem.weight": torch.zeros(48, 3, 3, 3)}, "hook": print},
               tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="safe loading"):
        load_icpr(tmp_path / "unsafe.pth")


def test_a_window_is_the_mean_of_its_face_frames():
    from engines.families import get_family

    family = get_family("icpr-b4")
    d = family.decide_frames(np.array([0.9, 0.2, 0.2, 0.2]), 0.5)  # one confident fake frame of four
    assert d.label == "real" and d.score == pytest.approx(0.375) and (d.fake_frames, d.voters) == (1, 4)
    assert get_family("dldfd").decide_frames(np.array([0.9, 0.9, 0.2, 0.2]), 0.5).label == "fake"  # a tie votes fake
    assert family.decide_frames(np.array([0.9, 0.9, 0.2, 0.2]), 0.5).label == "fake"           # mean 0.55
    assert family.decide_frames(np.array([]), 0.5).label == "no_face"


def test_fine_tuning_starts_from_the_weights_and_keeps_their_layout(icpr_bundle, tmp_path):
    """`dfwatch train fit` on an ICPR bundle (the code behind the CLI, which the DLDFD chain runs end
    to end): the family's network from the bundle's weights, fitted on face crops, written in the
    published layout, read back by the family, evaluated by its own rule (the mean of the frames)."""
    from engines.bundles.bundle import load_bundle
    from engines.models.checkpoints import read_checkpoint
    from training.evaluate import evaluate_frames
    from training.fit_frames import FrameFitConfig, fit_frames
    from training.frames import VideoCrops
    from engines.backends import TorchRunner

    bundle = load_bundle(icpr_bundle)
    family = bundle.spec
    rng = np.random.default_rng(0)

    def video(key: str, label: int) -> VideoCrops:
        crops = rng.integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
        return VideoCrops(key, label, "swap" if label else "real", crops, np.ones(3, bool), np.arange(3), 0.25)

    start = {k: v.clone() for k, v in family.trainable(bundle).state_dict().items()}
    summary = fit_frames(family, family.trainable(bundle), [video("r", 0), video("f", 1)],
                         [video("rv", 0), video("fv", 1)], bundle.frame_norm,
                         FrameFitConfig(epochs=1, batch_size=6, lr=1e-5), tmp_path)
    assert summary["family"] == "icpr-b4" and summary["train_frames"] == 6
    assert set(read_checkpoint(tmp_path / "model.pt")) >= {"net", "extra"}  # the published layout
    tuned = family.load_trained(tmp_path / "model.pt")
    moved = sum(not torch.equal(start[k], v) for k, v in tuned.state_dict().items() if v.is_floating_point())
    assert moved > 0  # it trained from the published weights, not from scratch: same keys, some changed
    report = evaluate_frames(TorchRunner("frame", family.probability(tuned)), [video("t", 1), video("u", 0)],
                             family.trained_normalization(tuned), 0.5, tmp_path / "eval",
                             family=family)
    assert report["decision"] == "mean P(fake) of face frames" and report["videos"] == 2
