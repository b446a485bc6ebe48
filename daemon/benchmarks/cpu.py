"""The CPU pipeline benchmark (`dfwatch bench`): per-stage and end-to-end throughput against this
machine's own limits; writes results.json and results.md into --out."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from daemon.benchmarks.common import bench_bundles, write_results
from daemon.benchmarks.end_to_end import end_to_end
from daemon.benchmarks.stages import (alerts_evidence_cost, decode_fps, frame_model_stages, matmul_ceiling,
                                      model_stages, mtcnn_ms, per_frame_cost, window_economics)
from engines.cli import setup
from engines.footage import footage as sample_footage


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

