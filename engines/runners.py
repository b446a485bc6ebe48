"""One runner interface for a bundle's model parts, whatever executes them.

`runner.run(*inputs) -> np.ndarray` takes numpy arrays or torch tensors (float32, batch first)
and returns float32 numpy. Backends: `torch` (CPU or CUDA), `onnxruntime` (CPU; CUDA provider
when present) and `tensorrt` (engines/trt.py). `open_runners` picks them for a bundle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from engines.bundle import Bundle, BundleError
from engines.export import IO_NAMES, torch_module

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# The CPU default, chosen from `dfwatch bench` on the 2-core reference machine (README, Benchmarks).
CPU_DEFAULT = "onnxruntime"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count(requested: int) -> int:
    """0 -> one per core; never more than the cores (oversubscription is 3-5x slower)."""
    n = cores()
    return n if requested <= 0 else min(requested, n)


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.ascontiguousarray(x, dtype=np.float32)


class Runner:
    part: str
    backend: str

    def run(self, *inputs) -> np.ndarray:
        raise NotImplementedError


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, part: str, module: torch.nn.Module, device: str = "cpu"):
        self.part = part
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def run(self, *inputs) -> np.ndarray:
        tensors = [torch.as_tensor(_numpy(x), device=self.device) for x in inputs]
        with torch.inference_mode():
            out = self.module(*tensors)
        return out.float().cpu().numpy()


class OnnxRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, part: str, path, threads: int = 0, providers: list[str] | None = None):
        import onnxruntime as ort

        self.part = part
        options = ort.SessionOptions()
        options.intra_op_num_threads = thread_count(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        wanted = providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=[p for p in wanted if p in available])
        self.inputs = [i.name for i in self.session.get_inputs()]
        if self.inputs != IO_NAMES[part][0]:
            raise BundleError(f"{path}: ONNX inputs {self.inputs}, expected {IO_NAMES[part][0]}; "
                              "re-export with 'dfwatch engines export'")

    def run(self, *inputs) -> np.ndarray:
        feeds = {name: _numpy(x) for name, x in zip(self.inputs, inputs)}
        return self.session.run(None, feeds)[0]


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
    """`auto`: TensorRT when it and a GPU are present, else the CPU default (torch on CUDA when a
    GPU is present without TensorRT). An explicit choice that cannot run is an error."""
    device = resolve_device(device)
    if requested == "auto":
        if tensorrt_available():
            return BackendChoice("tensorrt", "cuda", "TensorRT and a GPU are present")
        if device == "cuda":
            return BackendChoice("torch", "cuda", "a GPU without TensorRT")
        if CPU_DEFAULT == "onnxruntime" and not has_onnx(bundle):
            return BackendChoice("torch", "cpu", "the bundle has no ONNX files (run 'dfwatch engines export')")
        return BackendChoice(CPU_DEFAULT, "cpu", "the measured CPU default")
    if requested == "tensorrt" and not tensorrt_available():
        raise BundleError("backend tensorrt needs an NVIDIA GPU and the tensorrt package "
                          "(pip install 'dfwatch[gpu]'); use backend auto, torch or onnxruntime")
    if requested == "onnxruntime" and not has_onnx(bundle):
        raise BundleError(f"{bundle.root}: has no ONNX files for backend onnxruntime; "
                          f"run 'dfwatch engines export {bundle.root}' first")
    if device == "cuda" and not gpu_available():
        raise BundleError("device cuda was requested but no GPU is visible; use device auto or cpu")
    return BackendChoice(requested, device, "requested")


def open_runners(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0,
                 trt_settings=None, on_build=None) -> tuple[dict[str, Runner], BackendChoice]:
    """A runner per part of the bundle's family, on the chosen backend."""
    choice = choose_backend(backend, device, bundle)
    torch.set_num_threads(thread_count(threads))
    if choice.backend == "torch":
        runners = {p: TorchRunner(p, torch_module(bundle, p), choice.device) for p in bundle.parts}
    elif choice.backend == "onnxruntime":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if choice.device == "cuda" \
            else ["CPUExecutionProvider"]
        runners = {p: OnnxRunner(p, bundle.onnx_path(p), threads, providers) for p in bundle.parts}
    else:
        from engines.trt import open_tensorrt_runners

        runners = open_tensorrt_runners(bundle, trt_settings, on_build)
    return runners, choice
