"""`dfwatch bench --core`: the inference core's host cost, everything but the models.

BENCHMARK ONLY: NULL MODELS. The face detector returns fixed face boxes (1 to 4 per frame) and
the runners return zeros of the right shapes, so what is measured is the rest of one inference
process: reading and decoding frames from a real ZeroMQ socket, keeping frames for evidence,
tracking, smoothing, cropping, batching, windows, decisions, verdicts and alerts. A feeder
process pushes N unpaced streams of real decoded frames as fast as the process takes them; the
process runs its loop on one core (one thread for ONNX Runtime and torch).

Every row is measured in the same run: the core before face tracks (git commit BEFORE_TRACKS,
exported from this checkout's history and run with the same null models) beside today's, so the
ratio between them holds on a noisy shared machine. The same file runs in three roles:
  core.py serve ...  the inference process (today's code, or the old tree's on PYTHONPATH)
  core.py feed ...   the feeder
  bench_core(...)    the harness (`dfwatch bench --core`)
so nothing here is imported at module level that the old tree lacks.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.path.pop(0)  # this folder: its modules must not shadow top-level ones (the old tree's packages come first)

import argparse
import inspect
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

BEFORE_TRACKS = "a869291"     # the last commit whose inference core followed one face per stream
THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parents[2]
FRAME = (288, 360)            # franck.mp4's frames
# faces the null detector finds: 1, 2 or 4 boxes, one per quadrant, the first the largest
BOXES = [(40.0, 20.0, 160.0, 150.0), (220.0, 30.0, 320.0, 140.0), (50.0, 170.0, 140.0, 270.0),
         (230.0, 170.0, 320.0, 270.0)]


# ---- the null models (benchmark only) -----------------------------------------------------------

class NullDetector:
    """BENCHMARK ONLY: `faces` fixed boxes per frame, as MTCNN's Face objects."""

    def __init__(self, faces: int):
        from engines.pipeline.preprocess import Face

        self.faces = [Face(box=np.array(b), landmarks=np.zeros((5, 2)), prob=0.99) for b in BOXES[:faces]]

    def detect(self, frames):
        return [list(self.faces) for _ in frames]


class NullRunner:
    """BENCHMARK ONLY: zeros of a part's output shape; with `pixels` it takes 8-bit crops, as a
    runner that normalises inside its model does."""

    def __init__(self, shape: tuple, pixels=None):
        self.shape, self.pixels = shape, pixels

    def run(self, *inputs):
        return np.zeros((len(inputs[0]), *self.shape), np.float32)

    def run_pixels(self, crops):
        return np.zeros((len(crops), *self.shape), np.float32)


def null_runners(bundle, pixels: bool) -> dict:
    family, shapes = bundle.spec, {}
    for part in family.parts:
        if part.per == "frame":
            shapes[part.name] = () if not family.content_part else (len(bundle.manifest.style.levels), 512)
        elif part.per == "clip":
            shapes[part.name] = (2048,)
        else:
            shapes[part.name] = ()
    norms = {family.frame_part: bundle.frame_norm, family.content_part: bundle.content_norm} if pixels else {}
    return {name: NullRunner(shape, norms.get(name)) for name, shape in shapes.items()}


# ---- role: the inference process ----------------------------------------------------------------

def serve(a: argparse.Namespace) -> int:
    """An InferenceServer with null models, on whichever tree is first on sys.path."""
    import torch

    torch.set_num_threads(1)
    from daemon.service.inference import InferenceServer
    from daemon.wire.endpoints import resolve
    from engines.bundles.bundle import load_bundle
    from engines.config import load_config
    from engines.scoring import stream_analysis

    overrides = [f"endpoints.runtime_dir={a.runtime}", "metrics.port=0", "inference.max_frame_age_s=0",
                 f"evidence.dir={a.runtime}/evidence", "window.evict_after=3600", f"inference.max_batch={a.max_batch}"]
    config = load_config(None, overrides, environ={})
    bundle = load_bundle(a.bundle)
    stride, mff = config.window.stride, config.window.min_face_fraction
    if "work" in inspect.signature(stream_analysis).parameters:  # the core with face tracks
        from engines.pipeline.tracking import TrackingSpec

        tracking = TrackingSpec(select=a.select)
        new_analysis = lambda **kw: stream_analysis(bundle, stride, mff, tracking=tracking, **kw)  # noqa: E731
    else:                                                         # the core before them
        new_analysis = lambda: stream_analysis(bundle, stride, mff)  # noqa: E731
    server = InferenceServer(config, bundle, null_runners(bundle, a.pixels), "null", NullDetector(a.faces),
                             resolve(config.endpoints, create=True), new_analysis, max_batch=a.max_batch)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
    return server.run()


# ---- role: the feeder ---------------------------------------------------------------------------

def feed(a: argparse.Namespace) -> int:
    """N streams of real frames, unpaced (as fast as the process takes them) or at `fps` each."""
    import signal

    import cv2
    import zmq

    from daemon.wire.protocol import Frame

    cap = cv2.VideoCapture(a.footage)
    frames = [cap.read()[1] for _ in range(32)]
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 16)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{a.runtime}/frames")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    names = [f"s{i:03d}" for i in range(a.streams)]
    seq, start = 0, time.monotonic()
    while not stop:
        if a.fps:  # paced: every stream a frame each 1/fps
            time.sleep(max(0.0, start + seq / a.fps - time.monotonic()))
        pixels = frames[seq % len(frames)]
        for name in names:
            sock.send_multipart(Frame(name, seq, time.time(), time.monotonic(), pixels).encode(), copy=False)
        seq += 1
    sock.close()
    return 0


# ---- role: the harness --------------------------------------------------------------------------

def old_tree(out: Path, ref: str = BEFORE_TRACKS) -> Path | None:
    """The packages as they were at `ref`, exported into `out` from this checkout's history (None
    outside a checkout)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "engines", "daemon"], capture_output=True)
    if archive.returncode:
        return None
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def messages(sub, seconds: float):
    """(topic, map) of what the process publishes for `seconds`."""
    import msgpack

    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sub.poll(int(left * 1000) + 1):
            topic, payload = sub.recv_multipart()
            yield topic, msgpack.unpackb(payload, raw=False)


def steady(sub, streams: int, at_least: float, limit: float = 120.0) -> None:
    """Waits `at_least` seconds, and until most streams have published verdicts: before that a
    many-stream run measures only the windows' filling, not the whole per-frame cost."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        status = next_status(sub)
        published = sum(1 for s in (status or {}).get("streams", {}).values() if s.get("windows", 0) >= 2)
        if time.monotonic() - start >= at_least and published >= 0.9 * streams:
            return


def next_status(sub, timeout: float = 5.0) -> dict | None:
    return next((m for topic, m in messages(sub, timeout) if topic == b"status"), None)


def run_one(bundle_dir: Path, footage: Path, streams: int, faces: int, seconds: float, warmup: float,
            tree: Path | None = None, select: str = "all", pixels: bool = False, fps: float = 0.0,
            max_batch: int = 8) -> dict:
    """One inference process with null models fed `streams` streams: frames/s, µs per frame by stage, RSS."""
    import zmq

    from daemon.benchmarks.soak import memory_mb

    runtime = Path(tempfile.mkdtemp(prefix="dfwatch-core-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DFWATCH__LOGGING__LEVEL": "warning"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    serve_argv = [sys.executable, str(THIS_FILE), "serve", "--bundle", str(bundle_dir), "--runtime", str(runtime),
                  "--faces", str(faces), "--select", select, "--max-batch", str(max_batch)] + (["--pixels"] if pixels else [])
    server = subprocess.Popen(serve_argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"ipc://{runtime}/verdicts")
    feeder = None
    try:
        deadline = time.monotonic() + 60
        while next_status(sub, 1.0) is None:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the core under test did not start (exit {server.poll()})")
        feeder = subprocess.Popen([sys.executable, str(THIS_FILE), "feed", "--footage", str(footage), "--runtime",
                                   str(runtime), "--streams", str(streams), "--fps", str(fps)],
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
        steady(sub, streams, warmup)
        first, last, latencies = next_status(sub), None, []
        for topic, m in messages(sub, seconds):
            if topic == b"status":
                last = m
            elif topic.startswith(b"verdict."):
                latencies.append(m["latency_ms"])
        rss = memory_mb(server.pid)
        if first is None or last is None:
            raise RuntimeError("the core under test published no status while measured")
    finally:
        if feeder is not None:
            feeder.terminate()
            feeder.wait(10)
        server.terminate()
        server.wait(30)
        sub.close()
        shutil.rmtree(runtime, ignore_errors=True)
    return summarise(first, last, streams, faces, rss, latencies)


def summarise(first: dict, last: dict, streams: int, faces: int, rss: float, latencies: list) -> dict:
    dt = last["t"] - first["t"]
    analysed = sum(s.get("analysed", 0) for s in last["streams"].values()) - \
        sum(s.get("analysed", 0) for s in first["streams"].values())
    fps = analysed / dt if dt > 0 else 0.0
    stages = {}
    for name, totals in last["stages"].items():
        before = first["stages"].get(name, {"seconds": 0.0})
        stages[name] = (totals["seconds"] - before["seconds"]) / analysed * 1e6 if analysed else 0.0
    us = 1e6 / fps if fps else 0.0
    stages["other"] = us - sum(v for k, v in stages.items() if k != "receive")  # reading, decoding, bookkeeping
    if "receive" in stages:
        stages["other"] -= stages["receive"]
    return {"streams": streams, "faces": faces, "frames_per_s": round(fps, 1), "faces_per_s": round(fps * faces, 1),
            "us_per_frame": round(us, 1), "stages_us": {k: round(v, 1) for k, v in stages.items()},
            "rss_mb": round(rss), "latency_ms_p50": round(statistics.median(latencies)) if latencies else None,
            "verdicts": len(latencies)}


def tracking_us(faces: int, frames: int = 2000) -> float:
    """The tracker's own cost per frame (association of `faces` moving faces), in this process."""
    from engines.pipeline.preprocess import Face
    from engines.pipeline.tracking import FaceTracker, TrackingSpec

    tracker = FaceTracker(TrackingSpec(max_tracks=8))
    base = [np.array(b) for b in BOXES[:faces]]
    start = time.perf_counter()
    for i in range(frames):
        tracker.update([Face(box=b + i % 7, landmarks=np.zeros((5, 2))) for b in base], i / 8)
    return (time.perf_counter() - start) / frames * 1e6


def bench_core(bundles: dict[str, Path], footage: Path, quick: bool = False, log=print) -> dict:
    """Every row of the core benchmark: before/after per family and stream count, faces per frame,
    8-bit crops, latency when paced, and tracking's own cost."""
    streams = (1, 64) if quick else (1, 8, 64, 256)
    seconds, warmup = (4.0, 3.0) if quick else (8.0, 4.0)
    with tempfile.TemporaryDirectory(prefix="dfwatch-core-before-") as before:
        tree = old_tree(Path(before))
        result = {"before_tracks": BEFORE_TRACKS if tree else None, "frame": list(FRAME), "rows": [], "paced": [],
                  "tracking_us": {k: round(tracking_us(k), 1) for k in (1, 2, 4)}}
        for family, bundle_dir in bundles.items():
            for n in streams:
                variants = ([("before tracks", dict(tree=tree, faces=1))] if tree else []) + \
                    [("tracks, 1 face", dict(faces=1)), ("tracks, 4 faces", dict(faces=4)),
                     ("tracks, 1 face, 8-bit crops", dict(faces=1, pixels=True))]
                for core, kw in variants:
                    log(f"bench --core: {family}, {n} stream(s), {core} ...")
                    result["rows"].append({"family": family, "core": core,
                                           **run_one(bundle_dir, footage, n, seconds=seconds, warmup=warmup, **kw)})
            for k in (1, 2, 4):  # latency below saturation: 8 streams at 8 frames/s each
                log(f"bench --core: {family}, 8 paced streams, {k} face(s) a frame ...")
                result["paced"].append({"family": family, **run_one(bundle_dir, footage, 8, k, seconds=2 * seconds,
                                                                    warmup=warmup, fps=8.0)})
        return result


def core_markdown(r: dict) -> str:
    lines = ["## The inference core's host cost (null models: BENCHMARK ONLY)", "",
             "One inference process, its loop on one core, fed unpaced 360x288 frames of franck.mp4 over "
             "ZeroMQ; the detector returns fixed boxes and the runners zeros, so this is everything but the "
             f"models, measured once every stream publishes verdicts. 'before tracks' is commit "
             f"{r['before_tracks']} in the same run (its loop timed no 'receive' of its own: that is in 'other').", "",
             "| family | core | streams | frames/s | faces/s | µs/frame | detect | per-frame stage | content | "
             "decision | receive | other | RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        s = dict(row["stages_us"])
        frame_stage = next((v for k, v in s.items() if k in ("frame", "style")), 0.0)
        lines.append(f"| {row['family']} | {row['core']} | {row['streams']} | {row['frames_per_s']:.0f} | "
                     f"{row['faces_per_s']:.0f} | {row['us_per_frame']:.0f} | {s.get('detect', 0):.0f} | "
                     f"{frame_stage:.0f} | {s.get('content', 0):.0f} | {s.get('decision', 0):.0f} | " + (
                     f"{s['receive']:.0f} | " if "receive" in s else "- | ") + f"{s.get('other', 0):.0f} | {row['rss_mb']} |")
    lines += ["", "Paced: 8 streams at 8 frames/s each (below saturation): verdict latency is capture of a "
              "window's last frame to its verdict (it includes the 2 frames smoothing waits for).", "",
              "| family | faces a frame | faces/s | verdict latency p50 |", "|---|---|---|---|"]
    for row in r["paced"]:
        lines.append(f"| {row['family']} | {row['faces']} | {row['faces_per_s']:.0f} | {row['latency_ms_p50']} ms |")
    lines += ["", "Tracking's own cost per frame (association, `engines/pipeline/tracking.py`): " +
              ", ".join(f"{k} face(s) {v:.0f} µs" for k, v in r["tracking_us"].items()), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="the roles of the core benchmark (started by dfwatch bench --core)")
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bundle", required=True)
    s.add_argument("--runtime", required=True)
    s.add_argument("--faces", type=int, default=1)
    s.add_argument("--select", default="all")
    s.add_argument("--max-batch", type=int, default=8)
    s.add_argument("--pixels", action="store_true")
    f = sub.add_parser("feed")
    f.add_argument("--footage", required=True)
    f.add_argument("--runtime", required=True)
    f.add_argument("--streams", type=int, default=1)
    f.add_argument("--fps", type=float, default=0.0)
    a = p.parse_args(argv)
    return serve(a) if a.role == "serve" else feed(a)


if __name__ == "__main__":
    sys.exit(main())


def run_core(args) -> int:
    """daemon/benchmarks/core.py: the core's host cost with null models, before and after face tracks."""
    from daemon.benchmarks.common import bench_bundles, write_results
    from engines.cli import setup
    from engines.footage import footage as sample_footage

    setup(args, "bench")
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    result = bench_core(bench_bundles(args), footage, args.quick, log=lambda m: print(m, flush=True))
    print(write_results(Path(args.out), "core-results", result, core_markdown(result)))
    return 0

