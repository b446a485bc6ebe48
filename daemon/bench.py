"""`dfwatch bench`: per-stage and end-to-end throughput, against this machine's own limits.

Every number is measured in the same run as the ceiling it is compared with (fp32 matmul
GFLOP/s at the configured thread count), because these machines are shared and noisy; FLOPs come
from torch.utils.flop_counter. Writes bench/results.json and bench/results.md.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engines.cli import common_options, setup

REPO = Path(__file__).resolve().parents[1]


def register(sub) -> None:
    p = sub.add_parser("bench", parents=[common_options()],
                       help="measure per-stage and end-to-end throughput against this machine's limits")
    p.add_argument("--quick", action="store_true", help="a run of about 4 minutes (1 stream per family end to end)")
    p.add_argument("--family", choices=["all", "stylegru", "dldfd"], default="all",
                   help="model families to measure side by side (default all), with their demo bundles")
    p.add_argument("--bundle", metavar="DIR", help="one bundle to measure instead of the demo bundles (timings do "
                                                   "not depend on the weights' values)")
    p.add_argument("--footage", metavar="VIDEO", help="video for decode and end-to-end runs (default franck.mp4)")
    p.add_argument("--out", default=str(REPO / "bench"), metavar="DIR", help="where results.json/.md go")
    p.set_defaults(handler=_bench)


# ---- measuring -----------------------------------------------------------------------------

def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def flops_of(module, *inputs) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*[torch.as_tensor(x) for x in inputs])
    return counter.get_total_flops()


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
    from engines.bundle import load_style_encoder
    from engines.export import example_inputs, torch_module
    from engines.models.psp import PSPStyleEncoder

    rows = []
    full = PSPStyleEncoder(range(18)).eval()  # same body as the bundle's, all 18 heads (timing only)
    level9 = load_style_encoder(bundle.path("style"))
    shapes = {k: v.shape for k, v in full.state_dict().items()}
    full.load_state_dict({k: v for k, v in level9.state_dict().items() if shapes.get(k) == v.shape}, strict=False)
    parts = {"pSp level 9 (per face)": ("style", level9), "pSp all 18 levels (per face)": ("style-full", full),
             "3D ResNet-50 16x112x112 (per clip)": ("content", torch_module(bundle, "content")),
             "head (per window)": ("head", torch_module(bundle, "head"))}
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        for name, (part, module) in parts.items():
            inputs = [x.numpy() for x in example_inputs(bundle, "style" if part == "style-full" else part, 1)]
            onnx_path = bundle.onnx_path(part) if part != "style-full" else None
            if part == "style-full":
                onnx_path = Path(tmp) / "style-full.onnx"
                _export_module(module, inputs, onnx_path)
            rows += stage_rows(name, "style" if part == "style-full" else part, module, inputs, onnx_path, threads,
                               repeats, ceiling)
    return rows


def stage_rows(name: str, part: str, module, inputs: list, onnx_path: Path | None, threads: int, repeats: int,
               ceiling: float) -> list[dict]:
    """One stage timed on torch and, when there is an ONNX file, on ONNX Runtime."""
    from engines.runners import OnnxRunner, TorchRunner

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
    """The DLDFD family's per-frame model (its whole per-frame cost besides face detection)."""
    from engines.export import example_inputs, torch_module

    size = bundle.frame_norm.size
    inputs = [x.numpy() for x in example_inputs(bundle, "frame", 1)]
    return stage_rows(f"DLDFD {size}x{size} (per face)", "frame", torch_module(bundle, "frame"), inputs,
                      bundle.onnx_path("frame"), threads, 2 if quick else 5, ceiling)


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
    if psp and r3d and dldfd:
        out["model_flops_ratio"] = out["stylegru_gflops"] / out["dldfd_gflops"]
        out["model_time_ratio"] = (out["stylegru_s"] - detect) / (out["dldfd_s"] - detect)
        out["frame_time_ratio"] = out["stylegru_s"] / out["dldfd_s"]
    return out


def _export_module(module, inputs, path: Path) -> None:
    import torch

    with torch.no_grad():
        torch.onnx.export(module, tuple(torch.as_tensor(x) for x in inputs), str(path), input_names=["images"],
                          output_names=["codes"], dynamic_axes={"images": {0: "batch"}, "codes": {0: "batch"}},
                          opset_version=17, dynamo=False)


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


# ---- end to end ----------------------------------------------------------------------------

def rss_peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def end_to_end(bundle_dir: Path, footage: Path, streams: int, seconds: float, stride: int, family: str) -> dict:
    from daemon.watch import subscribe
    from daemon.protocol import Status, Verdict

    runtime = Path(tempfile.mkdtemp(prefix="dfwatch-bench-"))
    env = {**os.environ, "DFWATCH__ENDPOINTS__RUNTIME_DIR": str(runtime), "DFWATCH__LOGGING__LEVEL": "warning"}
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle_dir), "--set", "capture.loop=true",
            "--set", f"window.stride={stride}"]
    for i in range(streams):
        argv += ["--stream", f"s{i}={footage}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = subscribe(f"ipc://{runtime}/verdicts", None)
    latencies, statuses, peaks, first = [], [], {}, None
    try:
        deadline = time.monotonic() + seconds + 120
        while time.monotonic() < deadline:
            if not sub.poll(500):
                continue
            parts = sub.recv_multipart()
            msg = Status.decode(parts) if parts[0] == b"status" else Verdict.decode(parts)
            if isinstance(msg, Verdict):
                if first is None:
                    first = time.monotonic()  # measure from the first verdict: steady state
                    deadline = first + seconds
                else:
                    latencies.append(msg.latency_ms)
            elif first is not None:
                statuses.append(msg)
            for pid, cmd in _children(proc.pid).items():
                peaks[cmd] = max(peaks.get(cmd, 0.0), rss_peak_mb(pid))
    finally:
        sub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    return {"family": family, **_summarise(streams, seconds, latencies, statuses, peaks)}


def _children(pid: int) -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0")]
                    role = argv[3] if len(argv) > 3 else "?"
                    if role == "capture" and "--stream" in argv:
                        role += ":" + argv[argv.index("--stream") + 1].split("=")[0]
                    out[int(entry.name)] = role
            except (OSError, ValueError, IndexError):
                continue
    return out


def _summarise(streams, seconds, latencies, statuses, peaks) -> dict:
    if len(statuses) < 2:
        return {"streams": streams, "error": "no steady state reached (no verdict within the time limit)"}
    a, b = statuses[0], statuses[-1]
    span = b.t - a.t
    per_stream = {n: (b.streams[n]["analysed"] - a.streams.get(n, {}).get("analysed", 0)) / span for n in b.streams}
    dropped: dict[str, int] = {}
    for st in b.streams.values():
        for reason, n in st["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"streams": streams, "seconds": round(span, 1), "analysed_fps_per_stream": per_stream,
            "analysed_fps_total": sum(per_stream.values()), "dropped": dropped,
            "queue_depth_end": {n: s["queue_depth"] for n, s in b.streams.items()},
            "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p95": float(np.nanpercentile(lat, 95)),
                           "p99": float(np.nanpercentile(lat, 99)), "verdicts": len(latencies)},
            "peak_rss_mb": peaks}


# ---- report --------------------------------------------------------------------------------

def markdown(r: dict) -> str:
    c = r["ceiling"]
    lines = [f"Machine: {r['machine']}, {c['threads']} threads; fp32 matmul ceiling {c['gflops']:.0f} GFLOP/s "
             f"(torch {c['torch_gflops']:.0f}, numpy {c['numpy_gflops']:.0f}).", "",
             "| stage | backend | time | GFLOPs | GFLOP/s | of ceiling |", "|---|---|---|---|---|---|"]
    for s in r["stages"]:
        lines.append(f"| {s['stage']} | {s['backend']} | {s['seconds'] * 1000:.0f} ms | {s['gflops']:.1f} | "
                     f"{s['gflops_per_s']:.0f} | {s['of_ceiling']:.0%} |")
    lines.append(f"| video decode ({r['decode']['video']}) | OpenCV | {r['decode']['fps']:.0f} frames/s | | | |")
    for size, ms in r["mtcnn_ms"].items():
        lines.append(f"| MTCNN {size} (detect at {r['detect_width']} px) | torch | {ms:.0f} ms | | | |")
    e = r.get("economics")
    if e:
        lines += ["", f"Window economics ({e['backend']}, T={e['frames']}, stride {e['stride']}): incremental "
                  f"{e['incremental_gflops']:.0f} GFLOPs / {e['incremental_s']:.1f} s per verdict, naive (all 18 "
                  f"levels, whole window) {e['naive_gflops']:.0f} GFLOPs / {e['naive_s']:.1f} s: "
                  f"**{e['flops_ratio']:.1f}x fewer FLOPs, {e['time_ratio']:.1f}x less time**."]
    f = r.get("per_frame", {})
    if "frame_time_ratio" in f:
        lines += ["", f"Per analysed frame ({f['backend']}, MTCNN included: {f['detect_s'] * 1000:.0f} ms): StyleGRU "
                  f"{f['stylegru_s'] * 1000:.0f} ms ({f['stylegru_gflops']:.1f} GFLOPs: pSp level 9 + 1/stride of a "
                  f"content clip), DLDFD {f['dldfd_s'] * 1000:.0f} ms ({f['dldfd_gflops']:.1f} GFLOPs): models "
                  f"**{f['model_flops_ratio']:.1f}x fewer FLOPs, {f['model_time_ratio']:.1f}x less time** for DLDFD; "
                  f"{f['frame_time_ratio']:.1f}x with face detection."]
    lines += ["", "| family | streams | analysed frames/s per stream | total | dropped | latency p50 / p95 / p99 "
              "| peak RSS |", "|---|---|---|---|---|---|---|"]
    for run in r["end_to_end"]:
        family = run.get("family", "stylegru")
        if "error" in run:
            lines.append(f"| {family} | {run['streams']} | {run['error']} | | | | |")
            continue
        per = ", ".join(f"{v:.2f}" for v in run["analysed_fps_per_stream"].values())
        lat = run["latency_ms"]
        rss = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(run["peak_rss_mb"].items()))
        lines.append(f"| {family} | {run['streams']} | {per} | {run['analysed_fps_total']:.2f} | "
                     f"{run['dropped'] or 0} | {lat['p50'] / 1000:.1f} / {lat['p95'] / 1000:.1f} / "
                     f"{lat['p99'] / 1000:.1f} s | {rss} |")
    return "\n".join(lines) + "\n"


def bench_bundles(args) -> dict[str, Path]:
    """family -> bundle directory: the one given, else the demo bundles (built when missing)."""
    from daemon.demo import build_demo_bundle, bundle_dir, demo_head, usable
    from engines.manifest import read_manifest

    if args.bundle:
        return {read_manifest(args.bundle)["family"]: Path(args.bundle)}
    families = ("stylegru", "dldfd") if args.family == "all" else (args.family,)
    out = {}
    for family in families:
        out[family] = bundle_dir(family)
        if not usable(out[family]):
            build_demo_bundle(out[family], demo_head() if family == "stylegru" else None, family)
    return out


def _bench(args) -> int:
    import torch

    from engines.bundle import load_bundle
    from engines.preprocess import DetectorSettings, FaceDetector
    from engines.runners import thread_count

    config = setup(args, "bench")
    threads = thread_count(config.model.threads)
    footage = Path(args.footage) if args.footage else REPO / ".cache" / "footage" / "franck.mp4"
    dirs = bench_bundles(args)
    bundles = {family: load_bundle(d) for family, d in dirs.items()}
    stride = config.window.stride
    print("bench: ceiling ...", flush=True)
    ceiling = matmul_ceiling(threads)
    print("bench: stages ...", flush=True)
    detector = FaceDetector(DetectorSettings.from_config(config.faces))
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
              "quick": args.quick, "bundles": {f: b.id for f, b in bundles.items()}, "ceiling": ceiling,
              "decode": {"video": footage.name, "fps": decode_fps(footage)},
              "detect_width": config.faces.detect_width, "mtcnn_ms": mtcnn_ms(detector, footage), "stages": []}
    if "stylegru" in bundles:
        result["stages"] += model_stages(bundles["stylegru"], ceiling["gflops"], threads, args.quick)
        result["economics"] = window_economics(bundles["stylegru"], result["stages"], result["mtcnn_ms"], stride)
    if "dldfd" in bundles:
        result["stages"] += frame_model_stages(bundles["dldfd"], ceiling["gflops"], threads, args.quick)
    result["per_frame"] = per_frame_cost(result["stages"], result["mtcnn_ms"], stride)
    runs = [(1, 40)] if args.quick else [(1, 90), (2, 90), (4, 90)]
    result["end_to_end"] = []
    for family, bundle_dir in dirs.items():
        for streams, seconds in runs:
            print(f"bench: end to end, {family}, {streams} stream(s), {seconds} s ...", flush=True)
            result["end_to_end"].append(end_to_end(bundle_dir, footage, streams, seconds, stride, family))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0
