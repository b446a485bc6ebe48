"""TensorRT engines for a bundle's ONNX files (optional extra `gpu`; needs an NVIDIA GPU).

Engines are built with FP16 (or INT8 with a calibration cache from cached face crops), one
optimisation profile over the batch dimension (min/opt/max from the `tensorrt` config section)
and a persistent timing cache. An engine file is named by what determines it — the ONNX file's
checksum, the precision, the TensorRT version and the GPU — so a change in any of them selects
a new file and triggers a rebuild; nothing stale is ever loaded. Runners keep device buffers and
one CUDA stream each. Everything that needs no GPU (naming, rebuild decisions, profiles) is plain
Python and tested everywhere.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.backends.base import Runner
from engines.bundles.bundle import Bundle
from engines.cache import user_cache_dir
from engines.errors import BundleError

PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class TensorRTSettings:
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    workspace_mb: int = 2048
    precision: str = "fp16"
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, trt_config, precision: str = "fp16") -> "TensorRTSettings":
        return cls(trt_config.min_batch, trt_config.opt_batch, trt_config.max_batch, trt_config.workspace_mb,
                   precision, trt_config.cache_dir)


# ---- naming and rebuild decisions (no GPU needed) ------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def engine_name(part: str, onnx_sha256: str, precision: str, trt_version: str, gpu_name: str) -> str:
    """e.g. style-ffe88c50fb09d307-fp16-trt10.13.3-nvidia-h100-80gb-hbm3.engine"""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return f"{part}-{onnx_sha256[:16]}-{precision}-trt{trt_version}-{slug(gpu_name)}.engine"


def cache_dir(bundle: Bundle, settings: TensorRTSettings) -> Path:
    """Where engines are kept: tensorrt.cache_dir; else systemd's CacheDirectory= (a service's
    bundle is read-only under ProtectSystem=strict); else next to a writable bundle; else the
    user's cache. Engine names say what built them, so bundles can share a directory."""
    if settings.cache_dir:
        return Path(settings.cache_dir)
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "tensorrt"
    if os.access(bundle.root, os.W_OK):
        return bundle.root / "tensorrt"
    return user_cache_dir("tensorrt")


def engine_path(bundle: Bundle, part: str, settings: TensorRTSettings, trt_version: str, gpu_name: str) -> Path:
    entry = bundle.manifest.onnx.get(part)
    if entry is None:
        raise BundleError(f"{bundle.root}: no ONNX file for '{part}'; run 'dfwatch engines export {bundle.root}'")
    return cache_dir(bundle, settings) / engine_name(part, entry.sha256, settings.precision, trt_version, gpu_name)


def part_precision(bundle: Bundle, part: str, settings: TensorRTSettings) -> TensorRTSettings:
    """INT8 applies to the per-frame model (calibrated on face crops); other parts stay FP16."""
    if settings.precision == "int8" and part != bundle.frame_part:
        return replace(settings, precision="fp16")
    return settings


def needs_build(path: Path) -> bool:
    """An engine is reused only if a file with exactly its name (all inputs encoded) exists."""
    return not (path.is_file() and path.stat().st_size > 0)


def stale_engines(folder: Path, part: str, keep: Path) -> list[Path]:
    """Older engines of the same part (other checksum, precision, TensorRT or GPU)."""
    return sorted(p for p in folder.glob(f"{part}-*.engine") if p != keep)


def input_profiles(bundle: Bundle, part: str, settings: TensorRTSettings) -> dict[str, tuple[tuple, tuple, tuple]]:
    """Input name -> (min, opt, max) shapes; only the batch dimension varies."""
    shapes = bundle.input_shapes(part)
    b = (settings.min_batch, settings.opt_batch, settings.max_batch)
    return {name: tuple((n, *rest) for n in b) for name, rest in shapes.items()}


# ---- building and running (GPU) ------------------------------------------------------------

def _trt():
    try:
        import tensorrt
    except ImportError:
        raise BundleError("TensorRT is not installed: pip install 'dfwatch[gpu]' on a machine with an NVIDIA GPU") from None
    import torch

    if not torch.cuda.is_available():
        raise BundleError("TensorRT needs an NVIDIA GPU and none is visible (torch.cuda.is_available() is false)")
    return tensorrt


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def crop_calibrator(batches: list[np.ndarray], cache: Path):
    """An INT8 entropy calibrator over cached face crops (the per-frame model only); its cache
    file makes later builds skip calibration. A function, because the base class exists only
    once TensorRT is imported."""
    import torch

    trt = _trt()

    class CropCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.index = 0
            self.device = torch.empty(0)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0]) if batches else 1

        def get_batch(self, names):
            if self.index >= len(batches):
                return None
            self.device = torch.from_numpy(batches[self.index]).cuda()
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return CropCalibrator()


def calibration_batches(folder: str | Path, batch: int, norm, limit: int = 512) -> list[np.ndarray]:
    """Per-frame model inputs (normalised with `norm`, the bundle's `frame_norm`) for INT8
    calibration from a folder of face-crop images."""
    import cv2

    from engines.pipeline.preprocess import normalize

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    crops = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files]
    if len(crops) < batch:
        raise BundleError(f"{folder}: {len(crops)} face-crop images; INT8 calibration needs at least {batch}")
    x = normalize(np.stack([cv2.resize(c, (norm.size, norm.size), interpolation=cv2.INTER_AREA) for c in crops]), norm)
    return [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x) - batch + 1, batch)]


def build_engine(bundle: Bundle, part: str, settings: TensorRTSettings, out: Path,
                 calibration: list[np.ndarray] | None = None, log=None) -> Path:
    """Builds one engine from the bundle's ONNX file; reuses and updates the timing cache."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    onnx_path = bundle.onnx_path(part)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in input_profiles(bundle, part, settings).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if settings.precision == "int8":
        if not calibration:
            raise BundleError("INT8 needs calibration face crops ('dfwatch engines build --calibration DIR')")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = crop_calibrator(calibration, out.parent / f"{part}-{out.stem}.calib")
        config.set_calibration_profile(profile)
    timing_path = out.parent / "timing.cache"
    cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build the {part} engine from {onnx_path}; see the log above")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out


def ensure_engines(bundle: Bundle, settings: TensorRTSettings, calibration=None, on_build=None) -> dict[str, Path]:
    """Engine paths for all parts, building the missing ones (`on_build(part)` is told first,
    e.g. to extend a systemd start timeout)."""
    trt = _trt()
    paths = {}
    for part in bundle.parts:
        part_settings = part_precision(bundle, part, settings)
        path = engine_path(bundle, part, part_settings, trt.__version__, gpu_name())
        if needs_build(path):
            if on_build:
                on_build(part)
            build_engine(bundle, part, part_settings, path, calibration if part == bundle.frame_part else None)
            for old in stale_engines(path.parent, part, path):
                old.unlink(missing_ok=True)
        paths[part] = path
    return paths


class TensorRTRunner(Runner):
    """Runs one engine with torch-allocated device buffers on its own CUDA stream."""
    backend = "tensorrt"

    def __init__(self, part: str, path: Path):
        trt = _trt()
        import torch

        self.part, self.torch = part, torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BundleError(f"{path}: TensorRT could not load this engine; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def run(self, *inputs) -> np.ndarray:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            device_inputs = []
            for name, x in zip(self.inputs, inputs):
                t = torch.as_tensor(np.ascontiguousarray(x, np.float32)).cuda(non_blocking=True)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
                device_inputs.append(t)
            name = self.outputs[0]
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution of the {self.part} engine failed")
            result = out.cpu()
        self.stream.synchronize()
        return result.numpy()


def open_tensorrt_runners(bundle: Bundle, settings: TensorRTSettings | None = None, on_build=None) -> dict:
    paths = ensure_engines(bundle, settings or TensorRTSettings(), on_build=on_build)
    return {part: TensorRTRunner(part, path) for part, path in paths.items()}
