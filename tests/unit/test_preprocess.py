"""Shared preprocessing on real footage (franck.mp4, the astronaut still) and empty scenes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from engines.families.stylegru import CONTENT_NORM, STYLE_NORM
from engines.pipeline.preprocess import (CropSpec, DetectorSettings, Face, FaceDetector, FaceTrack,
                                content_clip, crop_face, normalize)
from helpers.crops import crop_sequence, follow, smooth_track


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(DetectorSettings())


@pytest.fixture(scope="module")
def franck(franck_frames):
    return franck_frames[:48]


@pytest.fixture(scope="module")
def astronaut():
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def jitter(track):
    boxes = np.array([f.box for f in track])
    return np.abs(np.diff(boxes, axis=0)).mean()


def test_face_found_in_every_franck_frame(detector, franck):
    detections = detector.detect(franck[:16])
    assert all(len(d) == 1 and d[0].prob > 0.99 for d in detections)
    box = detections[0][0].box
    assert 100 < box[0] < box[2] < 300 and 20 < box[1] < box[3] < 288  # the talking face, mid-frame


def test_detection_on_a_downscaled_frame_maps_boxes_back(detector, franck):
    big = cv2.resize(franck[0], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 1440x1152, detected at 320
    small_box = detector.detect([franck[0]])[0][0].box
    big_face = detector.detect([big])[0][0]
    np.testing.assert_allclose(big_face.box / 4, small_box, atol=0.04 * (small_box[2] - small_box[0]))
    assert big_face.landmarks.shape == (5, 2)


def test_crop_is_centred_on_the_face(detector, astronaut):
    face = detector.detect([astronaut])[0][0]
    crop = crop_face(astronaut, face, CropSpec())
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    again = detector.detect([cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)])[0]
    assert again, "the face must still be found inside its own crop"
    centre = (again[0].box[:2] + again[0].box[2:]) / 2
    assert np.abs(centre - 128).max() < 0.06 * 256
    width = again[0].box[2] - again[0].box[0]
    assert 0.55 * 256 < width < 0.85 * 256  # face box / (box + 20 % margin each side) ~ 1/1.4


def test_ffhq_alignment_levels_the_eyes(detector, astronaut):
    h, w = astronaut.shape[:2]
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h))
    face = detector.detect([rotated])[0][0]
    eyes = face.landmarks[1] - face.landmarks[0]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) > 12  # the input is tilted
    crop = crop_face(rotated, face, CropSpec(method="ffhq"))
    lm = detector.detect([cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)])[0][0].landmarks
    eyes = lm[1] - lm[0]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) < 5


def test_normalised_ranges_and_layouts(detector, franck):
    crops, found = crop_sequence(franck[:16], detector.detect(franck[:16]), CropSpec())
    assert found.all() and crops.shape == (16, 256, 256, 3)
    x = normalize(crops, STYLE_NORM)
    assert x.shape == (16, 3, 256, 256) and x.dtype == np.float32
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    np.testing.assert_allclose(x[3, :, 10, 20], crops[3, 10, 20] / 127.5 - 1, atol=1e-6)
    clip = content_clip(crops, CONTENT_NORM)
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == np.float32  # [C, T, H, W]
    small = cv2.resize(crops[5], (112, 112), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(clip[:, 5, 40, 60], (small[40, 60] / 255 - 0.45) / 0.225, atol=1e-5)
    assert CONTENT_NORM.mean == (0.45,) * 3 and CONTENT_NORM.std == (0.225,) * 3
    # a runner that normalises on its device takes 8-bit clips and gets exactly the same floats
    import torch

    from engines.pipeline.preprocess import model_size, normalize_tensor

    eight_bit = model_size(crops, CONTENT_NORM)[None]                       # (1, T, 112, 112, 3) uint8
    on_device = normalize_tensor(torch.from_numpy(eight_bit), CONTENT_NORM).numpy()
    assert on_device.shape == (1, 3, 16, 112, 112) and np.array_equal(on_device[0], clip)


def test_smoothing_reduces_frame_to_frame_jitter(detector, franck):
    track = follow(detector.detect(franck), "largest")
    assert jitter(smooth_track(track, 5)) < jitter(track)
    rng = np.random.default_rng(0)  # detector jitter as seen on compressed footage: a few pixels
    noisy = [Face(f.box + rng.normal(0, 4, 4), f.landmarks + rng.normal(0, 3, (5, 2)), f.prob) for f in track]
    assert jitter(smooth_track(noisy, 5)) < 0.6 * jitter(noisy)
    assert smooth_track(noisy, 1) == noisy


@pytest.mark.parametrize("scene", ["solid", "gradient", "noise"])
def test_no_face_falls_back_to_the_centre_crop(detector, scene):
    h, w = 288, 360
    if scene == "solid":
        frame = np.full((h, w, 3), (40, 120, 200), np.uint8)
    elif scene == "gradient":
        frame = np.repeat(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], h, 0).repeat(3, 2)
    else:
        frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    detections = detector.detect([frame])
    assert detections == [[]]
    crops, found = crop_sequence([frame], detections, CropSpec())
    assert not found[0]
    centre = cv2.resize(frame[:, (w - h) // 2:(w - h) // 2 + h], (256, 256), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(crops[0].astype(int) - cv2.cvtColor(centre, cv2.COLOR_BGR2RGB).astype(int))
    assert diff.mean() < 2 if scene != "noise" else diff.mean() < 40


def test_one_face_is_followed_when_several_are_present(detector, franck):
    canvas = np.zeros((288, 720, 3), np.uint8)
    canvas[:, :360] = franck[0]
    canvas[72:216, 450:630] = cv2.resize(franck[0], (180, 144))  # the same face at half size
    faces = detector.detect([canvas])[0]
    assert len(faces) == 2
    large = FaceTrack("largest").choose(faces)
    assert large.box[0] < 360
    track = FaceTrack("largest")
    track.last = min(faces, key=lambda f: f.area)  # we were following the small face
    assert track.choose(faces).box[0] > 360        # overlap keeps us on it
    assert FaceTrack("confident").choose(faces).prob == max(f.prob for f in faces)


def test_batched_detection_equals_one_by_one(detector, franck):
    batched = detector.detect(franck[:4])
    single = [detector.detect([f])[0] for f in franck[:4]]
    assert len(batched) == len(single) == 4 and all(len(a) == len(b) >= 1 for a, b in zip(batched, single))
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a[0].box, b[0].box, atol=1e-3)
