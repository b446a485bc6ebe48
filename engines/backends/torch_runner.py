"""The torch backend: a part's module on the CPU or a CUDA device."""
from __future__ import annotations

import numpy as np
import torch

from engines.backends.base import Runner, as_numpy
from engines.errors import BundleError
from engines.pipeline.preprocess import normalize_tensor
from engines.pipeline.specs import Normalization

# torch on CUDA: the precision `auto` means, chosen from `dfwatch bench --device cuda` (docs/gpu.md):
# fp16 and bf16 ran within 3 % of each other on an H100 and both passed the parity bounds of
# engines/benchmarks/gpu.py; fp16's error was 8x smaller (pSp rel. L2 1.9e-4 against 1.5e-3).
CUDA_PRECISION = "fp16"
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
        return self.run_device(*[self._upload(as_numpy(x)) for x in inputs]).cpu().numpy()

    def run_pixels(self, crops: np.ndarray) -> np.ndarray:
        """Like run on `normalize(crops, self.pixels)`, from (N, size, size, 3) uint8 RGB crops (or
        like run on the clips `content_clip` makes, from (N, T, size, size, 3) 8-bit clips)."""
        images = normalize_tensor(self._upload(np.ascontiguousarray(crops, dtype=np.uint8)), self.pixels)
        return self.run_device(images).cpu().numpy()
