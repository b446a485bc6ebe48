"""One runner interface for a bundle's model parts, whatever executes them.

`runner.run(*inputs) -> np.ndarray` takes numpy arrays or torch tensors (float32, batch first)
and returns float32 numpy. Backends: `torch` (CPU or CUDA), `onnxruntime` (CPU; CUDA provider
when present) and `tensorrt` (engines/backends/tensorrt.py). `open_runners` picks them for a bundle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from engines.bundles.bundle import Bundle, BundleError
from engines.bundles.export import IO_NAMES, torch_module
from engines.pipeline.preprocess import Normalization, normalize_tensor

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# The CPU default, chosen from `dfwatch bench` on the 2-core reference machine (README, Benchmarks).
CPU_DEFAULT = "onnxruntime"
# torch on CUDA: the precision `auto` means, chosen from `dfwatch bench --device cuda` (docs/gpu.md):
# fp16 and bf16 ran within 3 % of each other on an H100 and both passed the parity bounds of
# engines/benchmarks/gpu.py; fp16's error was 8x smaller (pSp rel. L2 1.9e-4 against 1.5e-3).
CUDA_PRECISION = "fp16"
# The most faces / clips per model call (`inference.max_batch: null`): 8 keeps a 2-core CPU's
# latency low; on a GPU batches of 64 are where pSp level 9 reaches 94 % of its batch-256 rate.
DEFAULT_MAX_BATCH = {"cpu": 8, "cuda": 64}
CHANNELS_LAST_PARTS = ("style", "frame")   # 2D convolution models (the 3D trunk and the head are not)


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
    pixels: Normalization | None = None  # set: run_pixels takes 8-bit crops and normalises on the device

    def run(self, *inputs) -> np.ndarray:
        raise NotImplementedError


PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def batch_bucket(n: int) -> int:
    """The CUDA-graph batch a call of n samples is padded to: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


class TorchRunner(Runner):
    """A part on torch. On CUDA it can run in reduced precision (`tf32`: float32 storage, TF32
    matrix units; `fp16`/`bf16`: autocast, so reductions and the GRU's state stay float32), with
    channels-last convolutions, and replay a captured CUDA graph per batch bucket (the batch padded
    to a power of two: per-sample models, so padding never changes a real sample's output)."""
    backend = "torch"

    def __init__(self, part: str, module: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, cuda_graphs: bool = False, pixels: Normalization | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.part = part
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        if precision != "fp32" and not on_cuda:
            raise BundleError(f"precision {precision} needs a CUDA device; on the CPU use fp32")
        self.precision, self.cuda_graphs = precision, cuda_graphs and on_cuda
        self.channels_last = channels_last and on_cuda
        self.module = module.to(self.device).eval()
        if on_cuda:  # the module may have been converted by an earlier runner: set its layout either way
            self.module = self.module.to(memory_format=torch.channels_last if self.channels_last
                                         else torch.contiguous_format)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.pixels = pixels
        self._graphs: dict[tuple, tuple] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None

    def _forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            tensors = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in tensors)
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.precision == "tf32"
        try:
            with torch.inference_mode(), torch.autocast(self.device.type, _AUTOCAST.get(self.precision, torch.float16),
                                                        enabled=self.precision in _AUTOCAST):
                return self.module(*tensors).float()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    def _graph(self, shapes: tuple) -> tuple:
        """(graph, static inputs, static output) for these padded input shapes, captured once."""
        if shapes not in self._graphs:
            static = [torch.zeros(s, device=self.device) for s in shapes]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN picks its kernels)
                for _ in range(2):
                    self._forward(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._forward(*static)
            self._graphs[shapes] = (graph, static, out)
        return self._graphs[shapes]

    def run_device(self, *inputs) -> torch.Tensor:
        """Like run, but takes and returns tensors on the runner's device (no host round-trip)."""
        tensors = [torch.as_tensor(x, device=self.device) for x in inputs]
        if not self.cuda_graphs:
            return self._forward(*tensors)
        n = tensors[0].shape[0]
        bucket = batch_bucket(n)
        graph, static, out = self._graph(tuple((bucket, *t.shape[1:]) for t in tensors))
        for buffer, t in zip(static, tensors):
            buffer[:n].copy_(t)
        graph.replay()
        return out[:n]

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        # pinned host memory (PyTorch caches it): an asynchronous copy to the GPU
        return torch.from_numpy(array).pin_memory().to(self.device, non_blocking=True)

    def run(self, *inputs) -> np.ndarray:
        return self.run_device(*[self._upload(_numpy(x)) for x in inputs]).cpu().numpy()

    def run_pixels(self, crops: np.ndarray) -> np.ndarray:
        """Like run on `normalize(crops, self.pixels)`, from (N, size, size, 3) uint8 RGB crops."""
        images = normalize_tensor(self._upload(np.ascontiguousarray(crops, dtype=np.uint8)), self.pixels)
        return self.run_device(images).cpu().numpy()


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
    """`auto` -> the measured CUDA default on a GPU, float32 on the CPU (the only CPU precision)."""
    if precision == "auto":
        return CUDA_PRECISION if device == "cuda" else "fp32"
    if precision != "fp32" and device != "cuda":
        raise BundleError(f"model.precision {precision} needs the torch backend on a CUDA device; "
                          "on the CPU use precision auto or fp32")
    return precision


def open_runners(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0,
                 trt_settings=None, on_build=None, precision: str = "auto",
                 cuda_graphs: bool = True) -> tuple[dict[str, Runner], BackendChoice]:
    """A runner per part of the bundle's family, on the chosen backend."""
    choice = choose_backend(backend, device, bundle)
    torch.set_num_threads(thread_count(threads))
    if choice.backend == "torch":
        precision = resolve_precision(precision, choice.device)
        on_gpu = choice.device == "cuda"
        if on_gpu:  # few shapes (batch buckets): tune each once; the per-frame part takes 8-bit crops
            torch.backends.cudnn.benchmark = True
        runners = {p: TorchRunner(p, torch_module(bundle, p), choice.device, precision, p in CHANNELS_LAST_PARTS,
                                  cuda_graphs, bundle.frame_norm if on_gpu and p == bundle.frame_part else None)
                   for p in bundle.parts}
        choice = BackendChoice(choice.backend, choice.device, f"{choice.reason}; precision {precision}")
    elif choice.backend == "onnxruntime":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if choice.device == "cuda" \
            else ["CPUExecutionProvider"]
        runners = {p: OnnxRunner(p, bundle.onnx_path(p), threads, providers) for p in bundle.parts}
    else:
        from engines.backends.tensorrt import open_tensorrt_runners

        runners = open_tensorrt_runners(bundle, trt_settings, on_build)
    return runners, choice
