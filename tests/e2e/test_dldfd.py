"""The DLDFD family: the model as documented, strict torchvision ResNet-50 loading, its bundle,
ONNX export, the majority-vote decision, and the daemon serving it end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from conftest import DLDFD_SMALL
from engines.models.checkpoints import (CheckpointError, dldfd_from_imagenet, identify, load_dldfd, load_resnet50_imagenet,
                                 save_dldfd)
from engines.pipeline.decision import NO_FACE, frame_vote
from engines.errors import BundleError
from engines.models.dldfd import DLDFDConfig
from helpers.bundles import rewrite_manifest
from helpers.daemon import DFWATCH, Subscriber, daemon_env, serve_frames, start, stop

T, STRIDE = DLDFD_SMALL["frames"], 2


# ---- model and checkpoints -----------------------------------------------------------------

def test_imagenet_resnet50_loads_strictly_into_the_trunk(resnet50_checkpoint):
    """The trunk has torchvision's key names: the ImageNet file loads strictly, and the trunk
    computes exactly torchvision's ResNet-50 features with those weights."""
    state_dict = torch.load(resnet50_checkpoint, weights_only=True)
    reference = torchvision.models.resnet50()
    reference.load_state_dict(state_dict, strict=True)
    reference.fc = torch.nn.Identity()
    model = dldfd_from_imagenet(resnet50_checkpoint)
    trunk = load_resnet50_imagenet(resnet50_checkpoint)
    assert set(trunk) == set(state_dict) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(model.trunk.state_dict()[k], state_dict[k]) for k in trunk)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.trunk(x), reference.eval()(x))


def test_forward_is_the_documented_architecture(resnet50_checkpoint):
    """stem: 3 parallel 3x3x64 convolutions -> concat (192) -> 1x1 to 3 channels; ResNet-50; fc -> 1 logit."""
    model = dldfd_from_imagenet(resnet50_checkpoint, seed=3)
    sd = model.state_dict()
    assert [tuple(sd[f"stem.branches.{i}.weight"].shape) for i in range(3)] == [(64, 3, 3, 3)] * 3
    assert tuple(sd["stem.squeeze.weight"].shape) == (3, 192, 1, 1) and tuple(sd["fc.weight"].shape) == (1, 2048)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        branches = torch.cat([F.conv2d(x, sd[f"stem.branches.{i}.weight"], sd[f"stem.branches.{i}.bias"], padding=1)
                              for i in range(3)], dim=1)
        stem = F.conv2d(branches, sd["stem.squeeze.weight"], sd["stem.squeeze.bias"])
        expected = model.trunk(stem) @ sd["fc.weight"].T + sd["fc.bias"]
        assert torch.allclose(model(x), expected[:, 0], atol=1e-5)
    assert model(x).shape == (2,)


def test_wrong_resnet50_files_get_clear_errors(tmp_path, resnet50_checkpoint, official_checkpoints):
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-50 .ImageNet. checkpoint: .*missing keys"):
        load_resnet50_imagenet(official_checkpoints("slow_r50"))
    sd = torch.load(resnet50_checkpoint, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    assert set(load_resnet50_imagenet(wrapped)) == set(sd) - {"fc.weight", "fc.bias"}  # DataParallel wrappers
    sd["fc.weight"] = torch.zeros(10, 2048)
    bad = tmp_path / "ten_classes.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"fc.weight is \(10, 2048\), expected \(1000, 2048\)"):
        load_resnet50_imagenet(bad)
    assert identify(resnet50_checkpoint)["kind"].startswith("ResNet-50") and identify(resnet50_checkpoint)["loads"]


def test_dldfd_file_round_trip_and_identification(tmp_path, resnet50_checkpoint):
    model = dldfd_from_imagenet(resnet50_checkpoint, DLDFDConfig(input_size=64), seed=1)
    path = tmp_path / "model.pt"
    save_dldfd(path, model)
    again = load_dldfd(path)
    assert again.cfg == model.cfg and all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    info = identify(path)
    assert info["kind"] == "DLDFD model" and info["loads"]
    assert info["parameters"] == sum(p.numel() for p in model.parameters()) == 23_516_036
    with pytest.raises(CheckpointError, match="not a dfwatch DLDFD file"):
        load_dldfd(resnet50_checkpoint)


# ---- decision --------------------------------------------------------------------------------

def test_majority_vote_with_mean_score():
    d = frame_vote(np.array([0.9, 0.8, 0.1, 0.2, 0.7]), 0.5)
    assert (d.label, d.fake_frames, d.voters) == ("fake", 3, 5) and d.score == pytest.approx(0.54)
    d = frame_vote(np.array([0.9, 0.1, 0.2, 0.3]), 0.5)
    assert d.label == "real" and d.fake_frames == 1 and d.score == pytest.approx(0.375)
    assert frame_vote(np.array([0.9, 0.1]), 0.5).label == "fake"  # a tie alerts
    assert frame_vote(np.array([0.45, 0.45, 0.45]), 0.4).label == "fake"  # votes use the threshold
    assert frame_vote(np.array([]), 0.5) == NO_FACE


# ---- bundle and backends ---------------------------------------------------------------------

def test_bundle_manifest_and_parts(dldfd_bundle):
    from engines.bundles.bundle import describe, load_bundle

    bundle = load_bundle(dldfd_bundle)
    m = bundle.manifest.as_json()
    assert m["family"] == "dldfd" and bundle.parts == ("frame",) and not bundle.trained
    assert m["frame"]["normalization"] == {"size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert m["crop"]["size"] == 64 and m["window"]["clip_frames"] == 0 and set(m["onnx"]) == {"frame"}
    assert bundle.content_norm is None and "majority vote" in describe(bundle)


def test_bundle_errors(tmp_path, dldfd_bundle, resnet50_checkpoint):
    import shutil

    from engines.bundles.bundle import load_bundle
    from engines.families.dldfd import assemble as assemble_dldfd
    from engines.bundles.export import export_bundle

    with pytest.raises(BundleError, match="exactly one of"):
        assemble_dldfd(tmp_path / "b", resnet50=resnet50_checkpoint, model=resnet50_checkpoint)
    copy = tmp_path / "copy"
    shutil.copytree(dldfd_bundle, copy)
    with pytest.raises(BundleError, match="a dldfd bundle has no part.s. style"):
        export_bundle(copy, ("style",))
    manifest = json.loads((copy / "manifest.json").read_text())
    rewrite_manifest(copy, {**manifest, "family": "dlfdd"})
    with pytest.raises(BundleError, match="model family 'dlfdd' is unknown to this dfwatch"):
        load_bundle(copy)
    del manifest["frame"]
    rewrite_manifest(copy, manifest)
    with pytest.raises(BundleError, match="manifest lacks required fields: frame"):
        load_bundle(copy)


def test_onnx_matches_torch_on_real_faces(dldfd_bundle, franck_frames):
    from engines.bundles.bundle import load_bundle
    from engines.scoring import detect_pending, stream_analysis
    from engines.pipeline.preprocess import FaceDetector
    from engines.backends import open_runners

    bundle = load_bundle(dldfd_bundle)
    analysis = stream_analysis(bundle, STRIDE, 0.5)
    for i, frame in enumerate(franck_frames[:6]):
        analysis.add_frame(frame, i, float(i), float(i))
    analysis.end()
    detect_pending(analysis, FaceDetector())
    x = np.stack([analysis.encoder_input(r) for r in analysis.queued_crops()])
    assert x.shape == (6, 3, 64, 64)
    torch_runners, _ = open_runners(bundle, "torch", "cpu")
    ort_runners, choice = open_runners(bundle, "auto", "cpu")
    assert choice.backend == "onnxruntime" and set(ort_runners) == {"frame"}
    a, b = torch_runners["frame"].run(x), ort_runners["frame"].run(x)
    assert a.shape == (6,) and np.abs(a - b).max() <= 1e-5


# ---- the daemon --------------------------------------------------------------------------------

def test_daemon_serves_dldfd_end_to_end(dldfd_bundle, footage, tmp_path):
    """`dfwatch run` with a DLDFD bundle on a real video file: capture, MTCNN, per-frame model,
    majority vote, verdicts on the PUB socket."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(dldfd_bundle), "--stream", f"cam={footage / 'franck.mp4'}",
                  "--set", f"window.stride={STRIDE}", "--set", "capture.fps=4"], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        verdicts = sub.wait_for(lambda s: s.of("cam")[:3] if len(s.of("cam")) >= 3 else None, 120,
                                "3 verdicts", log)
        for v in verdicts:
            assert v.family == "dldfd" and v.model == "test-dldfd" and v.untrained and v.backend == "onnxruntime"
            assert v.faces == v.frames == T and v.seq_last - v.seq_first + 1 == T
            assert 0 <= v.fake_frames <= T and 0 < v.score < 1
            assert v.label == ("fake" if 2 * v.fake_frames >= T else "real")
        assert [v.window for v in verdicts] == list(range(verdicts[0].window, verdicts[0].window + 3))
    finally:
        sub.close()
        assert stop(proc) == 0


def test_served_vote_equals_the_offline_vote(dldfd_bundle, franck_frames, tmp_path):
    from engines.bundles.bundle import load_bundle
    from engines.scoring import score_frames
    from engines.pipeline.preprocess import FaceDetector
    from engines.backends import open_runners

    frames = [(franck_frames[i], i, 1000.0 + i / 4, 10.0 + i / 4) for i in range(13)]
    bundle = load_bundle(dldfd_bundle)
    runners, _ = open_runners(bundle, "onnxruntime", "cpu")
    offline = score_frames(frames, bundle, runners, FaceDetector(), stride=STRIDE)
    served = serve_frames(dldfd_bundle, frames, "s", tmp_path, len(offline),
                          ("--set", f"window.stride={STRIDE}", "--set", "inference.threshold=0.505"))
    assert [v.window for v in served] == [w.inputs.window for w in offline]
    for v, w in zip(served, offline):
        assert abs(v.score - w.score) < 1e-5 and v.threshold == 0.505
        # the daemon decided with its own threshold: re-decide the offline frames with it
        assert v.fake_frames == int((w.inputs.encodings[w.inputs.found] >= 0.505).sum())


def test_engines_bundle_cli(tmp_path, resnet50_checkpoint):
    import subprocess

    out = tmp_path / "b"
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--family", "dldfd", "--resnet50", str(resnet50_checkpoint),
                                  "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "family dldfd, UNTRAINED" in r.stdout and "224 px" in r.stdout
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--family", "dldfd", "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "needs exactly one of --resnet50" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--family", "dldfd", "--psp", "psp.pt", "--resnet50",
                                  str(resnet50_checkpoint), "--out", str(tmp_path / "d")], capture_output=True, text=True)
    assert r.returncode != 0 and "--psp: a file for --family stylegru; a dldfd bundle takes --resnet50 or --model" \
        in r.stderr
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--resnet50", str(resnet50_checkpoint), "--out",
                                  str(tmp_path / "e")], capture_output=True, text=True)
    assert r.returncode != 0 and "--resnet50: a file for --family dldfd; a stylegru bundle takes" in r.stderr
