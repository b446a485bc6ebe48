"""The one preprocessing implementation, shared by training and the daemon.

Frames (BGR uint8, as OpenCV decodes them) -> faces (MTCNN, batched, on a downscaled copy) ->
one face followed per stream (largest or most confident, kept consistent by overlap) ->
temporal smoothing of boxes/landmarks (centred moving average) -> a 256x256 RGB crop (box + 20 %
margin, or an FFHQ-style similarity alignment from the 5 landmarks; centre crop when no face)
-> model inputs: style images in [-1, 1] and content clips Kinetics-normalised as [C, T, H, W].

The numbers (crop size, margins, means, stds, clip size) are data in `CropSpec`/`Normalization`,
stored in every bundle's manifest, so a model sees the same pixels at serving time as in training.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from engines.pipeline.specs import CropSpec, Normalization


@dataclass(frozen=True)
class DetectorSettings:
    """MTCNN settings (the `faces` configuration section)."""
    detect_width: int = 320
    min_face_size: int = 40
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_probability: float = 0.9
    factor: float = 0.709

    @classmethod
    def from_config(cls, faces) -> "DetectorSettings":
        return cls(detect_width=faces.detect_width, min_face_size=faces.min_face_size,
                   thresholds=tuple(faces.thresholds), min_probability=faces.min_probability)


@dataclass(frozen=True)
class Face:
    box: np.ndarray                    # (4,) x1, y1, x2, y2 in frame pixels
    landmarks: np.ndarray = field(repr=False)  # (5, 2) eyes (left, right), nose, mouth (left, right)
    prob: float = 1.0

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def centre(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2


# ---- detection -----------------------------------------------------------------------------

class FaceDetector:
    """facenet-pytorch MTCNN (its bundled P/R/O-Net weights), batched over equal-sized frames."""

    def __init__(self, settings: DetectorSettings = DetectorSettings(), device: str = "cpu"):
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.settings = settings
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (n().to(self.device).eval() for n in (PNet, RNet, ONet))

    def _scale(self, frame: np.ndarray) -> float:
        return min(1.0, self.settings.detect_width / frame.shape[1])

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per BGR frame (any sizes; equal sizes are batched), boxes in frame pixels."""
        from engines.pipeline.mtcnn import detect_faces

        results: list[list[Face]] = [[] for _ in frames]
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape, []).append(i)
        s = self.settings
        for indices in groups.values():
            scale = self._scale(frames[indices[0]])
            small = self.detection_images([frames[i] for i in indices], scale)
            boxes, points = detect_faces(small, s.min_face_size, self.pnet, self.rnet, self.onet, s.thresholds,
                                         s.factor)
            for i, b, p in zip(indices, boxes, points):
                results[i] = [Face(box=np.asarray(bb[:4], np.float64) / scale,
                                   landmarks=np.asarray(pp, np.float64).reshape(5, 2) / scale, prob=float(bb[4]))
                              for bb, pp in zip(b, p) if bb[4] >= s.min_probability]
        return results

    def detection_images(self, frames: Sequence[np.ndarray], scale: float) -> torch.Tensor:
        """Equal-sized BGR frames -> (B, h, w, 3) RGB uint8 at detection size, on the detector's device.

        On the CPU: OpenCV's area resize per frame (the fastest there). On a GPU the resize runs on
        the device after one upload of the batch through pinned memory, because at hundreds of
        frames/s OpenCV's 0.5-1.3 ms per frame in the inference loop was the limit (docs/gpu.md):
        torch's area averaging, rounded to integers like an 8-bit image. The two kernels differ in
        how they weigh edge pixels; `dfwatch bench --device cuda` reports the faces both find."""
        h, w = frames[0].shape[:2]
        size = (round(h * scale), round(w * scale))
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack([_resize_rgb(f, size) for f in frames]))
        batch = torch.empty((len(frames), h, w, 3), dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=batch.numpy())
        images = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).flip(1)
        if scale < 1.0:
            images = torch.nn.functional.interpolate(images.float(), size=size, mode="area").round_()
        return images.to(torch.uint8).permute(0, 2, 3, 1)


def _resize_rgb(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    if size == rgb.shape[:2]:
        return rgb
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


# ---- following one face --------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTrack:
    """Chooses the face to follow in each frame: the one overlapping the previous choice most
    (IoU >= min_iou), else the largest / most confident. Feed frames in order."""

    def __init__(self, select: str = "largest", min_iou: float = 0.3):
        if select not in ("largest", "confident"):
            raise ValueError(f"select must be 'largest' or 'confident', got {select!r}")
        self.select = select
        self.min_iou = min_iou
        self.last: Face | None = None

    def choose(self, faces: Sequence[Face]) -> Face | None:
        if not faces:
            return None
        chosen = None
        if self.last is not None:
            overlap = [(iou(f.box, self.last.box), f) for f in faces]
            best_iou, best = max(overlap, key=lambda t: t[0])
            chosen = best if best_iou >= self.min_iou else None
        if chosen is None:
            key = (lambda f: f.area) if self.select == "largest" else (lambda f: f.prob)
            chosen = max(faces, key=key)
        self.last = chosen
        return chosen


def smooth_one(track: Sequence[Face | None], i: int, length: int) -> Face | None:
    """The face of frame i averaged over the frames with a face in [i - length//2, i + length//2].
    Frames without a face stay without (the crop falls back to the centre)."""
    if track[i] is None or length <= 1:
        return track[i]
    half = length // 2
    near = [f for f in track[max(0, i - half): i + half + 1] if f is not None]
    if len(near) == 1:
        return near[0]
    return Face(box=np.mean([f.box for f in near], axis=0),
                landmarks=np.mean([f.landmarks for f in near], axis=0), prob=track[i].prob)


# ---- cropping ------------------------------------------------------------------------------

def _box_points(face: Face, margin: float) -> np.ndarray:
    """Three corners (top-left, bottom-left, bottom-right) of the square box + margin."""
    c = face.centre
    half = max(face.box[2] - face.box[0], face.box[3] - face.box[1]) * (0.5 + margin)
    return np.array([c + [-half, -half], c + [-half, half], c + [half, half]])


def _ffhq_points(face: Face) -> np.ndarray:
    """FFHQ's alignment recipe (eye and mouth centres) applied to MTCNN's 5 landmarks."""
    eye_l, eye_r, _, mouth_l, mouth_r = face.landmarks
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.array([c - x - y, c - x + y, c + x + y])


def _meso_points(face: Face) -> np.ndarray:
    """MesoNet's crop (its pipeline.py) on MTCNN's 5 landmarks: centred on the nose, side 1.3 x 2.2 x
    the larger of the eye distance and the eye-to-mouth distance, turned so that the line from the
    eyes' midpoint to the mouth's is vertical. Theirs centres on the mean of the nose tip and bridge
    points of dlib's 68 (MTCNN has the tip only) and measures to the mouth's landmarks' mean."""
    eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    down = mouth_avg - eye_avg
    length = max(np.hypot(*(eye_r - eye_l)), np.hypot(*down))
    half = 1.3 * 2.2 * length / 2
    y = down / max(np.hypot(*down), 1e-6) * half          # down the face
    x = np.array([y[1], -y[0]])                            # across it, left to right in the image
    return np.array([nose - x - y, nose - x + y, nose + x + y])


def _centre_points(shape: tuple) -> np.ndarray:
    h, w = shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return np.array([[x0, y0], [x0, y0 + side], [x0 + side, y0 + side]])


def crop_transform(face: Face | None, frame_shape: tuple, spec: CropSpec) -> np.ndarray:
    """2x3 affine matrix from frame pixels to the spec.size x spec.size crop."""
    if face is None:
        src = _centre_points(frame_shape)
    elif spec.method == "ffhq":
        src = _ffhq_points(face)
    elif spec.method == "meso":
        src = _meso_points(face)
    else:
        src = _box_points(face, spec.margin)
    s = spec.size
    dst = np.array([[0, 0], [0, s], [s, s]], np.float32)
    return cv2.getAffineTransform(src.astype(np.float32), dst)


def crop_face(frame_bgr: np.ndarray, face: Face | None, spec: CropSpec) -> np.ndarray:
    """(size, size, 3) RGB uint8 crop; black outside the frame; centre crop when face is None."""
    m = crop_transform(face, frame_bgr.shape, spec)
    if _scale(m) < 0.5:  # a face much larger than the crop: area-average first so the warp cannot alias
        frame_bgr, m = _shrink(frame_bgr, m)
    crop = cv2.warpAffine(frame_bgr, m, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def _scale(m: np.ndarray) -> float:
    return float(np.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])))


def _shrink(frame_bgr: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame shrunk by an integer factor with INTER_AREA, and the matrix adjusted to match."""
    factor = int(1 / _scale(m))
    h, w = frame_bgr.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
    adjusted = m.copy()
    adjusted[:, 0] *= w / size[0]
    adjusted[:, 1] *= h / size[1]
    return small, adjusted


def thumbnail(crop_rgb: np.ndarray, side: int = 64) -> np.ndarray:
    """A face crop shrunk for people (a track's picture on the dashboard), BGR uint8."""
    return cv2.cvtColor(cv2.resize(crop_rgb, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)


# ---- model inputs --------------------------------------------------------------------------

def model_size(images_rgb: np.ndarray, norm: Normalization) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB at the model's input size (resized only if the crop size differs)."""
    images = np.asarray(images_rgb)
    if images.shape[1:3] != (norm.size, norm.size):
        images = np.stack([cv2.resize(im, (norm.size, norm.size), interpolation=cv2.INTER_AREA) for im in images])
    return images


def normalize_tensor(images_rgb: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """`normalize` on a device: (N, size, size, 3) uint8 RGB tensor -> (N, 3, size, size) float32, the
    same arithmetic in the same order; 8-bit clips (N, T, size, size, 3) -> (N, 3, T, size, size),
    as `content_clip` makes them. A GPU runner takes 8-bit crops, so the inference loop moves a
    quarter of the bytes and does no per-crop float work (docs/gpu.md)."""
    x = images_rgb.float() / 255.0
    mean = torch.tensor(norm.mean, dtype=torch.float32, device=x.device)
    std = torch.tensor(norm.std, dtype=torch.float32, device=x.device)
    x = (x - mean) / std
    return (x.permute(0, 4, 1, 2, 3) if x.dim() == 5 else x.permute(0, 3, 1, 2)).contiguous()


def normalize(images_rgb: np.ndarray, norm: Normalization) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, size, size) float32 normalised (resized if needed)."""
    x = model_size(images_rgb, norm).astype(np.float32) / 255.0
    x = (x - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def content_clip(crops_rgb: np.ndarray, norm: Normalization) -> np.ndarray:
    """T face crops -> one slow_r50 clip (3, T, 112, 112), Kinetics-normalised, [C, T, H, W]."""
    return np.ascontiguousarray(normalize(crops_rgb, norm).transpose(1, 0, 2, 3))
