"""The ONNX Runtime backend: a part's exported ONNX file (CPU; the CUDA provider when present)."""
from __future__ import annotations

import numpy as np

from engines.backends.base import Runner, as_numpy, thread_count
from engines.errors import BundleError


class OnnxRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, part: str, path, threads: int = 0, providers: list[str] | None = None,
                 inputs: tuple[str, ...] | None = None, memory_patterns: bool = False):
        import onnxruntime as ort

        self.part = part
        options = ort.SessionOptions()
        options.intra_op_num_threads = thread_count(threads)
        options.inter_op_num_threads = 1
        # No memory patterns: ONNX Runtime plans one per input shape, and every batch size 1..max_batch
        # is a shape, each holding a full set of intermediate buffers in an arena that never shrinks
        # (the inference process grew from 1.1 to 2.7 GB as batch sizes came up); without them the
        # arena stays at its peak batch, as fast ('dfwatch bench --memory', docs/BENCHMARKS.md).
        options.enable_mem_pattern = memory_patterns
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        wanted = providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=[p for p in wanted if p in available])
        self.inputs = [i.name for i in self.session.get_inputs()]
        if inputs is not None and self.inputs != list(inputs):
            raise BundleError(f"{path}: ONNX inputs {self.inputs}, expected {list(inputs)}; "
                              "re-export with 'dfwatch engines export'")

    def run(self, *inputs) -> np.ndarray:
        feeds = {name: as_numpy(x) for name, x in zip(self.inputs, inputs)}
        return self.session.run(None, feeds)[0]
