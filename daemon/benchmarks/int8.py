"""INT8 against float32 on the CPU, model by model: speed, fidelity on held-out real footage, and the
cheaper levers (ONNX Runtime graph optimisation and threads, OpenVINO's CPU plugin).

Used by `dfwatch bench --int8` (daemon/benchmarks/pipeline.py adds the end-to-end runs). Calibration crops come
from one video, every fidelity figure from another (a different person and camera), both made by
the daemon's own per-stream code.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from engines.backends import OnnxRunner, open_runners
from daemon.benchmarks.measure import flops_of, timed
from engines.bundles.bundle import Bundle
from engines.bundles.quantize import part_inputs, quantize_bundle
from engines.scoring import detect_pending, score_frames, stream_analysis


def face_crops(bundle: Bundle, frames: list, detector) -> np.ndarray:
    """The bundle's face crops of these frames, made as the daemon makes them."""
    analysis = stream_analysis(bundle, 8, 0.5)
    for i, frame in enumerate(frames):
        analysis.add_frame(frame, i, float(i), float(i))
    detect_pending(analysis, detector)
    analysis.end()
    return np.stack([r.crop for r in analysis.queued_crops()])


def quantized_copy(bundle: Bundle, out: Path, crops: np.ndarray) -> Bundle:
    """The bundle copied to `out` and quantized on `crops` (written as images, as
    `train extract --save-crops` writes them)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle.root, out)
    folder = out.parent / f"{out.name}-calibration"
    folder.mkdir(exist_ok=True)
    for i, crop in enumerate(crops):
        cv2.imwrite(str(folder / f"crop-{i:04d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return quantize_bundle(out, folder)


def speed_rows(bundle: Bundle, crops: np.ndarray, ceiling_gflops: float, threads: int, repeats: int,
               batches=(1, 4)) -> list[dict]:
    """ms per item of each quantized part, float32 and INT8 in the same run, and the effective
    GFLOP/s against the float32 matmul ceiling."""
    import torch

    rows = []
    for part in bundle.manifest.int8:
        inputs = part_inputs(bundle, part, crops)
        flops = flops_of(bundle.module(part), torch.from_numpy(inputs[0][None]))
        runners = {"fp32": OnnxRunner(part, bundle.onnx_path(part), threads),
                   "int8": OnnxRunner(part, bundle.int8_path(part), threads)}
        for batch in batches:
            x = np.stack([inputs[i % len(inputs)] for i in range(batch)])
            seconds = {k: timed(lambda r=r: r.run(x), repeats) / batch for k, r in runners.items()}
            for precision, s in seconds.items():
                rows.append({"family": bundle.family, "part": part, "batch": batch, "precision": precision,
                             "ms": s * 1000, "gflops": flops / 1e9,
                             "of_fp32_ceiling": flops / s / 1e9 / ceiling_gflops,
                             "speedup": seconds["fp32"] / s})
    return rows


def fidelity_rows(bundle: Bundle, crops: np.ndarray) -> list[dict]:
    """Per quantized part on held-out crops: cosine similarity and relative L2 error of the INT8
    outputs against float32 (the worst sample and the mean)."""
    rows = []
    for part in bundle.manifest.int8:
        x = np.stack(part_inputs(bundle, part, crops))
        f32 = OnnxRunner(part, bundle.onnx_path(part)).run(x).reshape(len(x), -1).astype(np.float64)
        i8 = OnnxRunner(part, bundle.int8_path(part)).run(x).reshape(len(x), -1).astype(np.float64)
        cos = (f32 * i8).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(i8, axis=1)
        rel = np.linalg.norm(f32 - i8, axis=1) / np.maximum(np.linalg.norm(f32, axis=1), 1e-30)
        rows.append({"family": bundle.family, "part": part, "samples": len(x), "cosine_min": float(cos.min()),
                     "cosine_mean": float(cos.mean()), "rel_err_max": float(rel.max()),
                     "rel_err_mean": float(rel.mean())})
    return rows


def verdict_fidelity(bundle: Bundle, frames: list, detector, stride: int, threshold: float | None = None) -> dict:
    """The same held-out frames scored window by window in float32 and INT8: |Δscore| and how
    often the label flips."""
    timeline = [(f, i, float(i), float(i)) for i, f in enumerate(frames)]
    scores = {}
    for precision in ("fp32", "int8"):
        runners, _ = open_runners(bundle, "onnxruntime", "cpu", precision=precision)
        scores[precision] = [w.decision for w in score_frames(timeline, bundle, runners, detector, stride)]
    pairs = [(a, b) for a, b in zip(scores["fp32"], scores["int8"]) if a.score is not None and b.score is not None]
    deltas = [abs(a.score - b.score) for a, b in pairs]
    return {"family": bundle.family, "windows": len(pairs), "score_delta_max": max(deltas, default=0.0),
            "score_delta_mean": float(np.mean(deltas)) if deltas else 0.0,
            "label_flips": sum(a.label != b.label for a, b in pairs)}


def lever_rows(bundle: Bundle, crops: np.ndarray, threads: int, repeats: int) -> list[dict]:
    """The per-frame part in float32 at batch 1: ONNX Runtime's graph optimisation levels and thread
    counts, and OpenVINO's CPU plugin on the same ONNX file when it is installed (`pip install
    openvino`), at float32 and, where the CPU has bf16 units, at its bf16 default, with the
    relative error of its outputs against ONNX Runtime's."""
    import onnxruntime as ort

    part = bundle.frame_part
    samples = np.stack(part_inputs(bundle, part, crops))
    x = samples[:1]
    rows = []
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        for n in sorted({1, threads}):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = n, 1
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            session = ort.InferenceSession(str(bundle.onnx_path(part)), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            rows.append({"family": bundle.family, "part": part, "engine": "onnxruntime", "setting": level.lower(),
                         "threads": n, "ms": timed(lambda s=session: s.run(None, {name: x}), repeats) * 1000,
                         "rel_err_max": 0.0})
    try:
        import openvino as ov
    except ImportError:
        rows.append({"family": bundle.family, "part": part, "engine": "openvino", "setting": "not installed",
                     "threads": threads, "ms": None, "rel_err_max": None})
        return rows
    core = ov.Core()
    ref = OnnxRunner(part, bundle.onnx_path(part), threads).run(samples).reshape(len(samples), -1)
    hints = ["f32"] + (["bf16"] if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])
    for hint in hints:
        compiled = core.compile_model(str(bundle.onnx_path(part)), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint})
        out = np.concatenate([compiled([samples[i:i + 1]])[0] for i in range(len(samples))]).reshape(len(samples), -1)
        rows.append({"family": bundle.family, "part": part, "engine": "openvino",
                     "setting": f"CPU plugin {ov.__version__.split('-')[0]}, {hint}", "threads": threads,
                     "ms": timed(lambda: compiled([x]), repeats) * 1000,
                     "rel_err_max": float((np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())})
    return rows
