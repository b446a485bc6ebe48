"""INT8 ONNX models beside a bundle's float32 ones (`dfwatch engines quantize`).

ONNX Runtime static quantization in QDQ format of the convolutions and matrix products: weights
signed 8-bit per output channel, activations unsigned 8-bit per tensor (the u8 x s8 products that AVX2, AVX-512 VNNI and AMX
run), ranges calibrated on real face crops made by the bundle's own preprocessing — typically
the crops/ folder of a `dfwatch train extract --save-crops` cache. Each INT8 file is recorded in
the manifest with its checksum, the checksum of the float32 export it was made from and that of
the calibration set, so a changed file or a re-export is refused instead of served.

Only parts that run per frame or per clip are quantized by default: the window-level head is a
few milliseconds and stays float32. Whether INT8 pays for a part is measured by
`dfwatch bench --int8` (docs/BENCHMARKS.md); `model.precision: int8` serves the parts that have
an INT8 file and keeps float32 for the others.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from engines.bundles.bundle import Bundle, load_bundle
from engines.errors import BundleError
from engines.families.writing import file_entry, write_manifest
from engines.bundles.export import ONNX_DIR
from engines.pipeline.preprocess import content_clip, normalize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Only the products are quantized: convolutions and matrix products run u8 x s8, element-wise
# operations (BatchNorm, PReLU, SE gates, residual adds) stay float32 between them, which measured
# as fast as quantizing everything here and keeps more precision (docs/BENCHMARKS.md).
OP_TYPES = ["Conv", "MatMul", "Gemm"]
SETTINGS = {"format": "QDQ", "ops": "+".join(OP_TYPES), "weights": "QInt8 per channel",
            "activations": "QUInt8 per tensor", "calibration": "MinMax"}


def quantizable_parts(bundle: Bundle) -> tuple[str, ...]:
    """The parts worth quantizing: those that run per frame or per clip (the heavy convolutions)."""
    return tuple(p.name for p in bundle.spec.parts if p.per in ("frame", "clip"))


def read_crops(folder: str | Path, limit: int = 256) -> tuple[np.ndarray, str]:
    """(N, H, W, 3) uint8 RGB face crops from a folder of images (sorted by name, so a video's
    crops stay together), resized to the first crop's size, and the checksum of the set."""
    import cv2

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise BundleError(f"{folder}: no face-crop images (.png/.jpg); make some with "
                          "'dfwatch train extract --save-crops' (the crops/ folder of its cache)")
    digest = hashlib.sha256()
    crops = []
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise BundleError(f"{path}: not an image OpenCV can read; remove it from the calibration folder")
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    size = crops[0].shape[:2][::-1]
    crops = [c if c.shape[:2][::-1] == size else cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in crops]
    return np.stack(crops), digest.hexdigest()


def part_inputs(bundle: Bundle, part: str, crops: np.ndarray) -> list[np.ndarray]:
    """One model input per sample, made from face crops exactly as the daemon makes them."""
    per = bundle.spec.part(part).per
    if per == "frame":
        return list(normalize(crops, bundle.frame_norm))
    if per == "clip":
        c = bundle.clip_frames
        if len(crops) < c:
            crops = np.concatenate([crops] * (c // len(crops) + 1))
        return [content_clip(crops[i:i + c], bundle.content_norm) for i in range(0, len(crops) - c + 1, c)]
    raise BundleError(f"part '{part}' runs once per window on model outputs, not on face crops; "
                      f"quantize {', '.join(quantizable_parts(bundle))}")


class Samples(CalibrationDataReader):
    """ONNX Runtime's calibration reader over one input, a sample at a time."""

    def __init__(self, name: str, samples: list[np.ndarray]):
        self.items = iter([{name: np.ascontiguousarray(s[None], np.float32)} for s in samples])

    def get_next(self):
        return next(self.items, None)


def quantize_file(source: Path, out: Path, input_name: str, samples: list[np.ndarray]) -> None:
    """Static QDQ quantization of one ONNX file, calibrated on `samples` (MinMax)."""
    reader = Samples(input_name, samples)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # per-channel notes about rank-1 (BatchNorm, PReLU) tensors: harmless
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            op_types_to_quantize=OP_TYPES,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"CalibTensorRangeSymmetric": False})
    finally:
        root.setLevel(level)


def quantize_bundle(root: str | Path, calibration: str | Path, parts: tuple[str, ...] | None = None,
                    limit: int = 256, on_part=None) -> Bundle:
    """Writes onnx/<part>.int8.onnx for each part (default: `quantizable_parts`) and records them."""
    bundle = load_bundle(root)
    parts = parts or quantizable_parts(bundle)
    for part in parts:
        if part not in bundle.parts:
            raise BundleError(f"{bundle.root}: a {bundle.family} bundle has no part '{part}' "
                              f"(its parts: {', '.join(bundle.parts)})")
        if bundle.onnx_path(part) is None:
            raise BundleError(f"{bundle.root}: no ONNX file for '{part}'; run 'dfwatch engines export {bundle.root}' first")
    crops, crops_sha = read_crops(calibration, limit)
    int8 = {k: v.model_dump() for k, v in bundle.manifest.int8.items()}
    for part in parts:
        if on_part:
            on_part(part)
        spec = bundle.spec.part(part)
        rel = f"{ONNX_DIR}/{part}.int8.onnx"
        samples = part_inputs(bundle, part, crops)
        quantize_file(bundle.onnx_path(part), bundle.root / rel, spec.inputs[0], samples)
        float_entry = bundle.manifest.onnx[part]
        int8[part] = {**file_entry(bundle.root, rel), "opset": float_entry.opset, "inputs": list(spec.inputs),
                      "outputs": list(spec.outputs), "from_onnx_sha256": float_entry.sha256,
                      "calibration": {"sha256": crops_sha, "crops": len(crops), "samples": len(samples),
                                      "folder": Path(calibration).name},
                      "settings": SETTINGS}
    write_manifest(bundle.root, bundle.spec.manifest_type.model_validate({**bundle.manifest.as_json(), "int8": int8}))
    return load_bundle(bundle.root)
