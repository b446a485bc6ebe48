"""The GPU path's code, checked on the CPU where it can be (batched MTCNN against facenet-pytorch,
precision and batch rules, 8-bit crops normalised by the runner), and on a CUDA GPU where one is
present (those tests skip elsewhere, naming the GPU they need). Figures: docs/gpu.md."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from conftest import DFWATCH
from engines.bundles.bundle import load_bundle
from engines.errors import BundleError
from engines.pipeline.mtcnn import _crop_boxes, area_crops, detect_faces, integral_image, pyramid_scales
from engines.families.dldfd import IMAGENET_NORM
from engines.pipeline.preprocess import DetectorSettings, FaceDetector, normalize
from engines.backends import (CUDA_PRECISION, DEFAULT_MAX_BATCH, TorchRunner, batch_bucket, choose_backend,
                             open_runners, resolve_precision)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs an NVIDIA GPU with CUDA (figures in docs/gpu.md are from an H100)")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(DetectorSettings(), "cpu")


@pytest.fixture(scope="module")
def detection_batch(franck_frames, detector):
    """24 real frames, 2 apart, at detection size (the CPU path's OpenCV resize)."""
    frames = franck_frames[::2][:24]
    scale = detector._scale(frames[0])
    return detector.detection_images(frames, scale)


def _library(images: torch.Tensor, d: FaceDetector):
    from facenet_pytorch.models.utils.detect_face import detect_face

    s = d.settings
    with torch.no_grad():
        return detect_face(images.numpy(), s.min_face_size, d.pnet, d.rnet, d.onet, list(s.thresholds), s.factor,
                           d.device)


def test_batched_mtcnn_finds_what_facenet_pytorch_finds(detection_batch, detector):
    s = detector.settings
    lib_boxes, lib_points = _library(detection_batch, detector)
    boxes, points = detect_faces(detection_batch, s.min_face_size, detector.pnet, detector.rnet, detector.onet,
                                 s.thresholds, s.factor)
    assert len(boxes) == len(detection_batch)
    exact = 0
    for a, b, pa, pb in zip(lib_boxes, boxes, lib_points, points):
        a, pa = np.asarray(a, np.float64).reshape(-1, 5), np.asarray(pa, np.float64).reshape(-1, 5, 2)
        assert a.shape == b.shape and len(b) >= 1  # every frame of franck.mp4 shows his face
        diff = max(np.abs(a - b).max(), np.abs(pa - pb).max())
        assert diff < 1.0  # pixels at detection size; float-rounding near-ties in NMS can move a box slightly
        exact += diff < 1e-3
    assert exact >= 0.9 * len(boxes)


def test_area_crops_are_area_interpolation(detection_batch):
    images = detection_batch.permute(0, 3, 1, 2).float()
    rng = np.random.default_rng(1)
    h, w = images.shape[2:]
    rows = [(0, h, 0, w), (5, 6, 7, 8), (10, 57, 20, 67), (0, 13, 290, 320), (100, 240, 3, 98)]
    for _ in range(20):
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        rows.append((y0, int(rng.integers(y0 + 1, h + 1)), x0, int(rng.integers(x0 + 1, w + 1))))
    index = torch.tensor([i % len(images) for i in range(len(rows))])
    for size in (24, 48):
        crops = area_crops(integral_image(images), index, torch.tensor(rows), size)
        for k, (y0, y1, x0, x1) in enumerate(rows):
            ref = interpolate(images[index[k]:index[k] + 1, :, y0:y1, x0:x1], (size, size), mode="area")[0]
            assert torch.allclose(crops[k], ref, rtol=0, atol=3e-5), (y0, y1, x0, x1)  # 1-2 float32 ulps at 255


def test_candidates_outside_the_image_are_dropped_not_misaligned():
    boxes = torch.tensor([[-30.0, -30.0, -5.0, -5.0], [10.7, 20.2, 50.9, 60.1], [300.0, 10.0, 400.0, 90.0],
                          [-10.0, 5.0, 20.0, 30.0]])
    rows, keep = _crop_boxes(boxes, w=320, h=240)
    assert keep.tolist() == [False, True, True, True]
    assert rows[1].tolist() == [19, 60, 9, 50]     # the library's pad(): trunc, 1-based, clamped
    assert rows[2].tolist() == [9, 90, 299, 320]   # right edge clamped to the width
    assert rows[3].tolist() == [4, 30, 0, 20]      # left edge clamped to the first column


def test_frames_without_faces_give_empty_results(detector):
    s = detector.settings
    images = torch.full((3, 240, 320, 3), 128, dtype=torch.uint8)
    boxes, points = detect_faces(images, s.min_face_size, detector.pnet, detector.rnet, detector.onet, s.thresholds,
                                 s.factor)
    assert [b.shape for b in boxes] == [(0, 5)] * 3 and [p.shape for p in points] == [(0, 5, 2)] * 3
    assert detector.detect([np.zeros((480, 640, 3), np.uint8)]) == [[]]


def test_pyramid_scales_follow_the_library_rule():
    scales = pyramid_scales(240, 320, 40, 0.709)
    assert scales[0] == pytest.approx(0.3) and all(b == pytest.approx(a * 0.709) for a, b in zip(scales, scales[1:]))
    assert 240 * scales[-1] >= 12 > 240 * scales[-1] * 0.709


def test_precision_rules():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == CUDA_PRECISION == "fp16"
    with pytest.raises(BundleError, match="model.precision fp16 needs the torch backend on a CUDA device"):
        resolve_precision("fp16", "cpu")
    module = torch.nn.Linear(4, 1)
    with pytest.raises(BundleError, match="precision bf16 needs a CUDA device"):
        TorchRunner("head", module, "cpu", precision="bf16")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        TorchRunner("head", module, "cpu", precision="fp8")
    assert [batch_bucket(n) for n in (1, 2, 3, 8, 9, 64, 65, 256)] == [1, 2, 4, 8, 16, 64, 128, 256]
    assert DEFAULT_MAX_BATCH == {"cpu": 8, "cuda": 64}


def test_runner_normalises_8bit_crops_as_the_cpu_path_does(dldfd_bundle, franck_frames):
    from engines.scoring import detect_pending, stream_analysis

    bundle = load_bundle(dldfd_bundle)
    analysis = stream_analysis(bundle, 4, 0.5)
    for i, frame in enumerate(franck_frames[:6]):
        analysis.add_frame(frame, i, float(i), float(i))
    detect_pending(analysis, FaceDetector())
    analysis.end()
    records = analysis.queued_crops()
    pixels = np.stack([analysis.encoder_pixels(r) for r in records])
    floats = np.stack([analysis.encoder_input(r) for r in records])
    assert pixels.dtype == np.uint8 and np.array_equal(normalize(pixels, bundle.frame_norm), floats)
    runner = TorchRunner("frame", bundle.module("frame"), pixels=bundle.frame_norm)
    np.testing.assert_array_equal(runner.run_pixels(pixels), runner.run(floats))
    assert normalize(pixels[:1], IMAGENET_NORM).shape[1] == 3


def test_cpu_runners_take_floats_and_backend_auto_on_the_cpu(dldfd_bundle):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only choice; this machine has a GPU")
    bundle = load_bundle(dldfd_bundle)
    runners, choice = open_runners(bundle, "torch", "cpu", threads=1)
    assert runners["frame"].pixels is None and "precision fp32" in choice.reason
    assert choose_backend("auto", "auto", bundle).backend == "onnxruntime"


def test_bench_device_cuda_without_a_gpu_says_so(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the message on a machine without a GPU")
    r = subprocess.run(DFWATCH + ["bench", "--device", "cuda", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "no CUDA GPU is visible" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1, r.stderr


def test_precision_setting_is_validated():
    r = subprocess.run(DFWATCH + ["config", "check", "--set", "model.precision=fp8"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "model.precision" in r.stderr


# ---- on a CUDA GPU -------------------------------------------------------------------------

@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_runner_matches_the_cpu(dldfd_bundle, franck_frames, precision):
    from engines.bundles.export import example_inputs

    bundle = load_bundle(dldfd_bundle)
    x = example_inputs(bundle, "frame", 5)[0].numpy()
    ref = TorchRunner("frame", bundle.module("frame")).run(x)
    for graphs in (False, True):
        out = TorchRunner("frame", bundle.module("frame"), "cuda", precision, True, graphs).run(x)
        assert np.abs(out - ref).max() <= (1e-5 if precision == "fp32" else 1e-2)


@needs_cuda
@pytest.mark.gpu
def test_cuda_detector_finds_the_library_faces(franck_frames):
    d = FaceDetector(DetectorSettings(), "cuda")
    frames = franck_frames[::4][:16]
    images = d.detection_images(frames, d._scale(frames[0]))
    lib_boxes, _ = _library(images.cpu(), d)
    faces = d.detect(frames)
    assert [len(np.asarray(b).reshape(-1, 5)) for b in lib_boxes] == [len(f) for f in faces]
