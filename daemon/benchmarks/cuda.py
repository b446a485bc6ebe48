"""`dfwatch bench --device cuda`: the GPU path (parity, per-part throughput per precision and
batch, batched MTCNN, end to end with many streams); writes gpu-results.json/.md."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from daemon.benchmarks.common import _plain, bench_bundles, sample_frames
from daemon.benchmarks.end_to_end import end_to_end
from engines.cli import setup
from engines.footage import footage as sample_footage


GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


MTCNN_BATCHES = (1, 8, 32, 64, 128)


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


