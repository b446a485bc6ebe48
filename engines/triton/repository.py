"""A Triton model repository from a bundle: one model per part, named `<family>.<part>`.

Each model's `config.pbtxt` takes its tensor names from the family's `Part`, its dims from the
part's ONNX file (batch first, dynamic axes -1), and carries the bundle id and the ONNX file's
sha256 as parameters, which the daemon's Triton runner checks against its own manifest. Platforms:
`onnxruntime` (model.onnx: Triton's ONNX Runtime backend, in NGC's container), `tensorrt`
(model.plan built here with TensorRT: a GPU host) and `python` (model.py running the ONNX file
with ONNX Runtime inside Triton's Python backend: what the `nvidia-pytriton` wheel's server has).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from engines.backends.triton_naming import model_name
from engines.bundles.bundle import Bundle
from engines.errors import BundleError

PLATFORMS = ("onnxruntime", "tensorrt", "python")
MODEL_PY = Path(__file__).with_name("model_py.py")  # the Python-backend model, copied as model.py


def tensor_dims(onnx_path: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(inputs, outputs): name -> dims of one batch item, -1 where the axis is dynamic."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph

    def dims(values) -> dict[str, list[int]]:
        return {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:]
                for v in values}
    initializers = {i.name for i in graph.initializer}
    return dims([i for i in graph.input if i.name not in initializers]), dims(graph.output)


def config_pbtxt(name: str, platform: str, inputs: dict, outputs: dict, max_batch: int, instances: int,
                 queue_delay_us: int, params: dict[str, str], gpu: bool) -> str:
    def tensor(n: str, d: list[int]) -> str:  # one number per item: Triton wants dims, so [1]
        return f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, d or [1]))} ] }}'

    def tensors(kind: str, items: dict) -> str:
        return f"{kind} [\n" + ",\n".join(tensor(n, d) for n, d in items.items()) + "\n]\n"
    engine = {"onnxruntime": 'platform: "onnxruntime_onnx"', "tensorrt": 'platform: "tensorrt_plan"',
              "python": 'backend: "python"'}[platform]
    parameters = "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items())
    return (f'name: "{name}"\n{engine}\nmax_batch_size: {max_batch}\n' + tensors("input", inputs)
            + tensors("output", outputs)
            + f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
            + f"instance_group [ {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]\n" + parameters)


def write_repository(bundle: Bundle, out: Path, platform: str = "python", instances: int = 1, max_batch: int = 8,
                     queue_delay_us: int = 2000, trt_settings=None) -> list[str]:
    """Writes one model per part under `out`; returns the model names."""
    if platform not in PLATFORMS:
        raise BundleError(f"unknown Triton platform {platform!r}: choose {', '.join(PLATFORMS)}")
    names = []
    for part in bundle.spec.part_names:
        entry = bundle.manifest.onnx.get(part)
        if entry is None:
            raise BundleError(f"{bundle.root}: no ONNX file for '{part}'; run 'dfwatch engines export {bundle.root}'")
        onnx_path = bundle.root / entry.path
        inputs, outputs = tensor_dims(onnx_path)
        name = model_name(bundle, part)
        folder = out / name
        version = folder / "1"
        if folder.exists():
            shutil.rmtree(folder)
        version.mkdir(parents=True)
        if platform == "python":
            shutil.copyfile(onnx_path, version / "model.onnx")
            shutil.copyfile(MODEL_PY, version / "model.py")
        elif platform == "onnxruntime":
            shutil.copyfile(onnx_path, version / "model.onnx")
        else:
            _build_plan(bundle, part, version / "model.plan", trt_settings)
        # the runner gives its caller the part's own item shape back (e.g. [] where Triton has [1])
        params = {"dfwatch_bundle": bundle.id, "dfwatch_part": part, "dfwatch_onnx_sha256": entry.sha256,
                  "dfwatch_output_dims": json.dumps(next(iter(outputs.values())))}
        (folder / "config.pbtxt").write_text(config_pbtxt(name, platform, inputs, outputs, max_batch, instances,
                                                          queue_delay_us, params, gpu=platform == "tensorrt"))
        names.append(name)
    return names


def _build_plan(bundle: Bundle, part: str, path: Path, trt_settings) -> None:
    """A serialized TensorRT engine for the part (needs TensorRT and a GPU: a Triton GPU host)."""
    from engines.backends import tensorrt_available
    from engines.backends.tensorrt import TensorRTSettings, build_engine

    if not tensorrt_available():
        raise BundleError("--platform tensorrt needs TensorRT and an NVIDIA GPU here (the engine is built for "
                          "the server's GPU: run it there); on a CPU host use --platform python or onnxruntime")
    build_engine(bundle, part, trt_settings or TensorRTSettings(), path)
