"""The backends that run a bundle's parts, behind one `Runner` interface, chosen from a table.

`torch` (CPU or CUDA: engines/backends/torch_runner.py), `onnxruntime` (CPU; the CUDA provider
when present: onnx_runner.py) and `tensorrt` (tensorrt.py). `open_runners` picks one for a
bundle (`model.backend`, `auto` by default) and opens a runner per part of its family.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engines.backends.base import Runner, as_numpy, cores, thread_count
from engines.backends.onnx_runner import OnnxRunner
from engines.backends.torch_runner import CUDA_PRECISION, PRECISIONS, TorchRunner, batch_bucket
from engines.bundles.bundle import Bundle
from engines.errors import BundleError

__all__ = ["BACKENDS", "CPU_DEFAULT", "CUDA_PRECISION", "DEFAULT_MAX_BATCH", "PRECISIONS", "BackendChoice",
           "OnnxRunner", "Runner", "TorchRunner", "as_numpy", "batch_bucket", "choose_backend", "cores",
           "gpu_available", "open_runners", "resolve_device", "resolve_precision", "tensorrt_available",
           "thread_count"]

# The CPU default, chosen from `dfwatch bench` on the 2-core reference machine (docs/BENCHMARKS.md).
CPU_DEFAULT = "onnxruntime"
# The most faces / clips per model call (`inference.max_batch: null`): 8 keeps a 2-core CPU's
# latency low; on a GPU batches of 64 are where pSp level 9 reaches 94 % of its batch-256 rate.
DEFAULT_MAX_BATCH = {"cpu": 8, "cuda": 64}


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    device: str
    reason: str


def gpu_available() -> bool:
    return torch.cuda.is_available()


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return gpu_available()


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu; other values pass through."""
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    return device


def has_onnx(bundle: Bundle) -> bool:
    """Every part of the bundle has an ONNX file."""
    return all(bundle.onnx_path(p) is not None for p in bundle.parts)


def choose_backend(requested: str, device: str, bundle: Bundle) -> BackendChoice:
    """`auto`: on a GPU, torch on CUDA (at `model.precision`, fp16 by default: the fastest path
    measured correct there, docs/gpu.md; TensorRT has not been measured, so it runs only when
    asked for); on the CPU, the CPU default. An explicit choice that cannot run is an error."""
    device = resolve_device(device)
    if requested == "auto":
        if device == "cuda":
            return BackendChoice("torch", "cuda", "a GPU: torch on CUDA, the measured path")
        if CPU_DEFAULT == "onnxruntime" and not has_onnx(bundle):
            return BackendChoice("torch", "cpu", "the bundle has no ONNX files (run 'dfwatch engines export')")
        return BackendChoice(CPU_DEFAULT, "cpu", "the measured CPU default")
    if requested == "triton":  # the models run on the server; face detection here, on this device
        return BackendChoice("triton", device if device != "cuda" or gpu_available() else "cpu",
                             "requested: a Triton model server")
    if requested == "tensorrt" and not tensorrt_available():
        raise BundleError("backend tensorrt needs an NVIDIA GPU and the tensorrt package "
                          "(pip install 'dfwatch[gpu]'); use backend auto, torch or onnxruntime")
    if requested == "onnxruntime" and not has_onnx(bundle):
        raise BundleError(f"{bundle.root}: has no ONNX files for backend onnxruntime; "
                          f"run 'dfwatch engines export {bundle.root}' first")
    if device == "cuda" and not gpu_available():
        raise BundleError("device cuda was requested but no GPU is visible; use device auto or cpu")
    return BackendChoice(requested, device, "requested")


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> the measured CUDA default on a GPU, float32 on the CPU."""
    if precision == "auto":
        return CUDA_PRECISION if device == "cuda" else "fp32"
    if precision == "int8":
        raise BundleError("model.precision int8 runs the bundle's INT8 ONNX models on ONNX Runtime: use "
                          "model.backend onnxruntime (or auto) on the CPU")
    if precision != "fp32" and device != "cuda":
        raise BundleError(f"model.precision {precision} needs the torch backend on a CUDA device; "
                          "on the CPU use precision auto, fp32 or int8")
    return precision


def _open_torch(bundle: Bundle, choice: BackendChoice, threads: int, precision: str, cuda_graphs: bool,
                trt_settings, on_build, **_) -> tuple[dict[str, Runner], BackendChoice]:
    precision = resolve_precision(precision, choice.device)
    on_gpu = choice.device == "cuda"
    if on_gpu:  # few shapes (batch buckets): tune each once; the per-frame part takes 8-bit crops
        torch.backends.cudnn.benchmark = True
    pixels = {bundle.frame_part: bundle.frame_norm, bundle.spec.content_part: bundle.content_norm} if on_gpu else {}
    runners = {p.name: TorchRunner(p.name, bundle.module(p.name), choice.device, precision, p.channels_last,
                                   cuda_graphs, pixels.get(p.name)) for p in bundle.spec.parts}
    return runners, BackendChoice(choice.backend, choice.device, f"{choice.reason}; precision {precision}")


def _open_onnxruntime(bundle: Bundle, choice: BackendChoice, threads: int, precision: str, cuda_graphs: bool,
                      trt_settings, on_build, **_) -> tuple[dict[str, Runner], BackendChoice]:
    """float32 ONNX files; with precision int8 each part's INT8 model where the bundle has one."""
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if choice.device == "cuda" \
        else ["CPUExecutionProvider"]
    int8 = precision == "int8"
    if int8 and not bundle.manifest.int8:
        raise BundleError(f"{bundle.root}: has no INT8 models for model.precision int8; make them with "
                          f"'dfwatch engines quantize {bundle.root} --calibration CROPS_DIR'")
    if int8 and choice.device != "cpu":
        raise BundleError("model.precision int8 runs on the CPU; set model.device cpu")
    if not int8 and precision not in ("auto", "fp32"):
        resolve_precision(precision, choice.device)  # the error that says which backend runs it
    paths = {p: (bundle.int8_path(p) if int8 else None) or bundle.onnx_path(p) for p in bundle.parts}
    runners = {p.name: OnnxRunner(p.name, paths[p.name], threads, providers, p.inputs) for p in bundle.spec.parts}
    if int8:
        parts = ", ".join(f"{p} {'int8' if bundle.int8_path(p) else 'fp32'}" for p in bundle.parts)
        choice = BackendChoice(choice.backend, choice.device, f"{choice.reason}; precision {parts}")
    return runners, choice


def _open_tensorrt(bundle: Bundle, choice: BackendChoice, threads: int, precision: str, cuda_graphs: bool,
                   trt_settings, on_build, **_) -> tuple[dict[str, Runner], BackendChoice]:
    from engines.backends.tensorrt import open_tensorrt_runners

    return open_tensorrt_runners(bundle, trt_settings, on_build), choice


def _open_triton(bundle: Bundle, choice: BackendChoice, threads: int, precision: str, cuda_graphs: bool,
                 trt_settings, on_build, triton: tuple[str, float] | None = None) -> tuple[dict[str, Runner], BackendChoice]:
    """`triton`: (triton.url, triton.timeout_s); waits up to 60 s for the server to be ready."""
    from engines.backends.triton_runner import DEFAULT_URL, open_triton_runners

    url, timeout_s = triton or (DEFAULT_URL, 10.0)
    return open_triton_runners(bundle, url, timeout_s), BackendChoice("triton", choice.device, f"Triton at {url}")


# backend name (model.backend) -> the function that opens a runner per part of a bundle
BACKENDS = {"torch": _open_torch, "onnxruntime": _open_onnxruntime, "tensorrt": _open_tensorrt,
            "triton": _open_triton}


def open_runners(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0,
                 trt_settings=None, on_build=None, precision: str = "auto",
                 cuda_graphs: bool = True, triton: tuple[str, float] | None = None) -> tuple[dict[str, Runner], BackendChoice]:
    """A runner per part of the bundle's family, on the chosen backend (`triton`: the model
    server's URL and call timeout, for backend triton)."""
    choice = choose_backend(backend, device, bundle)
    torch.set_num_threads(thread_count(threads))
    return BACKENDS[choice.backend](bundle, choice, threads, precision, cuda_graphs, trt_settings, on_build,
                                    triton=triton)
