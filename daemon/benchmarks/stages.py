"""Per-stage costs on this machine, each against its own matmul ceiling measured in the same run
(these machines are shared and noisy): the model parts per backend, MTCNN, decoding, what a frame
and a window cost each family, and what alerts and evidence cost the inference loop. FLOPs come
from torch.utils.flop_counter."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from daemon.benchmarks.measure import flops_of, timed
from daemon.benchmarks.common import sample_frames


def matmul_ceiling(threads: int, n: int = 2048) -> dict:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_torch = timed(lambda: a @ b, 5)
    x, y = a.numpy(), b.numpy()
    t_numpy = timed(lambda: x @ y, 5)
    flops = 2 * n ** 3
    return {"n": n, "threads": threads, "torch_gflops": flops / t_torch / 1e9, "numpy_gflops": flops / t_numpy / 1e9,
            "gflops": max(flops / t_torch, flops / t_numpy) / 1e9}


def decode_fps(video: Path, frames: int = 300) -> float:
    import cv2

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    start, n = time.perf_counter(), 0
    while n < frames and cap.read()[0]:
        n += 1
    return n / (time.perf_counter() - start)


def mtcnn_ms(detector, footage: Path) -> dict:
    import cv2

    frame = cv2.VideoCapture(str(footage)).read()[1]
    out = {}
    for w, h in ((640, 480), (1280, 720)):
        big = cv2.resize(frame, (w, h))
        out[f"{w}x{h}"] = timed(lambda big=big: detector.detect([big]), 5) * 1000
    return out


def model_stages(bundle, ceiling: float, threads: int, quick: bool) -> list[dict]:
    """pSp level-9 path and full encoder, 3D ResNet-50 clip, head: per backend."""
    from engines.models.checkpoints import load_style_encoder
    from engines.bundles.export import example_inputs, export_module
    from engines.models.psp import PSPStyleEncoder

    rows = []
    full = PSPStyleEncoder(range(18)).eval()  # same body as the bundle's, all 18 heads (timing only)
    level9 = load_style_encoder(bundle.path("style"))
    shapes = {k: v.shape for k, v in full.state_dict().items()}
    full.load_state_dict({k: v for k, v in level9.state_dict().items() if shapes.get(k) == v.shape}, strict=False)
    parts = {"pSp level 9 (per face)": ("style", level9), "pSp all 18 levels (per face)": ("style-full", full),
             "3D ResNet-50 16x112x112 (per clip)": ("content", bundle.module("content")),
             "head (per window)": ("head", bundle.module("head"))}
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        for name, (part, module) in parts.items():
            inputs = [x.numpy() for x in example_inputs(bundle, "style" if part == "style-full" else part, 1)]
            onnx_path = bundle.onnx_path(part) if part != "style-full" else None
            if part == "style-full":
                onnx_path = Path(tmp) / "style-full.onnx"
                style = bundle.spec.part("style")
                export_module(module, inputs, onnx_path, style.inputs, style.outputs, style.dynamic_axes())
            rows += stage_rows(name, "style" if part == "style-full" else part, module, inputs, onnx_path, threads,
                               repeats, ceiling)
    return rows


def stage_rows(name: str, part: str, module, inputs: list, onnx_path: Path | None, threads: int, repeats: int,
               ceiling: float) -> list[dict]:
    """One stage timed on torch and, when there is an ONNX file, on ONNX Runtime."""
    from engines.backends import OnnxRunner, TorchRunner

    flops = flops_of(module, *inputs)
    runners = {"torch": TorchRunner(part, module)}
    if onnx_path is not None and onnx_path.is_file():
        runners["onnxruntime"] = OnnxRunner(part, onnx_path, threads)
    rows = []
    for backend, runner in runners.items():
        seconds = timed(lambda r=runner, x=inputs: r.run(*x), repeats)
        rows.append({"stage": name, "backend": backend, "seconds": seconds, "gflops": flops / 1e9,
                     "gflops_per_s": flops / seconds / 1e9, "of_ceiling": flops / seconds / 1e9 / ceiling})
    return rows


def frame_model_stages(bundle, ceiling: float, threads: int, quick: bool) -> list[dict]:
    """A frame-level family's per-frame model (its whole per-frame cost besides face detection):
    DLDFD, the ICPR 2020 detectors."""
    from engines.bundles.export import example_inputs

    size, part = bundle.frame_norm.size, bundle.frame_part
    inputs = [x.numpy() for x in example_inputs(bundle, part, 1)]
    return stage_rows(f"{bundle.spec.title} {size}x{size} (per face)", part, bundle.module(part), inputs,
                      bundle.onnx_path(part), threads, 2 if quick else 5, ceiling)


def per_frame_cost(stages: list[dict], mtcnn: dict, stride: int) -> dict:
    """What one analysed frame costs each family on the CPU default backend: face detection plus
    the per-frame model (StyleGRU also a share of its content clips: one new clip per `stride`
    frames at steady state)."""
    backend = "onnxruntime" if any(r["backend"] == "onnxruntime" for r in stages) else "torch"

    def find(prefix):
        return next((r for r in stages if r["stage"].startswith(prefix) and r["backend"] == backend), None)
    psp, r3d, dldfd = find("pSp level 9"), find("3D ResNet-50"), find("DLDFD")
    detect = mtcnn["640x480"] / 1000
    out = {"backend": backend, "detect_s": detect}
    if psp and r3d:
        out["stylegru_gflops"] = psp["gflops"] + r3d["gflops"] / stride
        out["stylegru_s"] = detect + psp["seconds"] + r3d["seconds"] / stride
    if dldfd:
        out["dldfd_gflops"] = dldfd["gflops"]
        out["dldfd_s"] = detect + dldfd["seconds"]
    out["frame_level"] = {r["stage"].removesuffix(" (per face)"): {"gflops": r["gflops"], "s": detect + r["seconds"]}
                          for r in stages if r["backend"] == backend and r["stage"].endswith("(per face)")
                          and not r["stage"].startswith("pSp")}
    if psp and r3d and dldfd:
        out["model_flops_ratio"] = out["stylegru_gflops"] / out["dldfd_gflops"]
        out["model_time_ratio"] = (out["stylegru_s"] - detect) / (out["dldfd_s"] - detect)
        out["frame_time_ratio"] = out["stylegru_s"] / out["dldfd_s"]
    return out


def window_economics(bundle, stages: list[dict], mtcnn: dict, stride: int) -> dict:
    """Per verdict: the incremental window (stride new faces at level 9, one new clip, one head
    call) against naive recomputation of the whole window with all 18 levels at the same stride."""
    def stage(name, backend):
        return next(r for r in stages if r["stage"].startswith(name) and r["backend"] == backend)
    backend = "onnxruntime" if any(r["backend"] == "onnxruntime" for r in stages) else "torch"
    t, clips = bundle.frames, bundle.frames // bundle.clip_frames
    l9, l18 = stage("pSp level 9", backend), stage("pSp all 18", backend)
    r3d, head = stage("3D ResNet-50", backend), stage("head", backend)
    detect = mtcnn["640x480"] / 1000
    inc_flops = stride * l9["gflops"] + r3d["gflops"] + head["gflops"]
    naive_flops = t * l18["gflops"] + clips * r3d["gflops"] + head["gflops"]
    inc_s = stride * (l9["seconds"] + detect) + r3d["seconds"] + head["seconds"]
    naive_s = t * (l18["seconds"] + detect) + clips * r3d["seconds"] + head["seconds"]
    return {"backend": backend, "frames": t, "stride": stride, "incremental_gflops": inc_flops,
            "naive_gflops": naive_flops, "flops_ratio": naive_flops / inc_flops, "incremental_s": inc_s,
            "naive_s": naive_s, "time_ratio": naive_s / inc_s}


def alerts_evidence_cost(footage: Path, stride: int, window: int, repeats: int) -> dict:
    """What alerts and evidence add to the inference loop per verdict: `stride` frames kept for
    evidence (a resize each) and one alert-state step; what an alert's evidence job costs the loop
    to hand over; and, off the loop, the writer thread's time for one alert's files."""
    import cv2

    from daemon.outcomes.alerts import AlertTracker
    from daemon.outcomes.evidence import EvidenceWriter, FrameStore, WindowEvidence
    from daemon.wire.protocol import Verdict

    frames = [cv2.resize(f, (640, 480)) for f in sample_frames(footage, window)]  # capture size, as sent
    store = FrameStore(320, window + 2 * stride + 8)
    add_s = timed(lambda: [store.add(i, f) for i, f in enumerate(frames)], repeats) / len(frames)
    v = Verdict(stream="s", window=0, seq_first=0, seq_last=window - 1, t_first=0.0, t_last=1.0, score=0.9,
                label="fake", threshold=0.5, faces=window, frames=window, model="m", backend="b", latency_ms=1.0)
    tracker = AlertTracker("s")
    step_s = timed(lambda: tracker.on_verdict(v), 200 * repeats)
    kept = [store.get(i) for i in range(window)]
    alert = AlertTracker("s").on_verdict(v) or tracker.alert
    job = WindowEvidence(alert, [k[0] for k in kept], [np.array([60.0, 40.0, 200.0, 180.0])] * window, 0.9, 8.0)
    with tempfile.TemporaryDirectory() as tmp:
        writer = EvidenceWriter(Path(tmp), 1 << 30, 30, queue_size=1000)
        hand_s = timed(lambda: writer.submit(job), repeats)
        writer.close(timeout=60)
        direct = EvidenceWriter(Path(tmp) / "direct", 1 << 30, 30)
        write_s = timed(lambda: direct._write_window(job), repeats)
        direct.close()
    frame_bytes = kept[0][0].nbytes
    return {"frame_keep_ms": add_s * 1000, "alert_step_ms": step_s * 1000, "per_verdict_ms": (stride * add_s + step_s) * 1000,
            "evidence_handover_ms": hand_s * 1000, "evidence_write_ms": write_s * 1000, "stride": stride,
            "memory_mb_per_stream": store.capacity * frame_bytes / 2**20}

