"""Triton Python-backend model: runs a dfwatch bundle part's ONNX file with ONNX Runtime.

Copied by `dfwatch engines triton-repo --platform python` as `<model>/1/model.py` next to
`model.onnx`. Triton's dynamic batcher hands `execute` several requests at once: they are
concatenated along the batch axis, run in one ONNX Runtime call and split back, so requests from
different inference processes share a model call. One intra-op thread per model instance
(`--instances` sets how many), so instances never oversubscribe the cores.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.output_dims = [[int(d) for d in o["dims"]] for o in config["output"]]  # a scalar item: [1]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("DFWATCH_TRITON_THREADS", "1"))
        options.inter_op_num_threads = 1
        here = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(here, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batches = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs] for r in requests]
        sizes = [b[0].shape[0] for b in batches]
        feeds = {name: np.concatenate([b[i] for b in batches]).astype(np.float32, copy=False)
                 for i, name in enumerate(self.inputs)}
        results = self.session.run(self.outputs, feeds)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]).reshape(size, *dims))
                       for name, out, dims in zip(self.outputs, results, self.output_dims)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
