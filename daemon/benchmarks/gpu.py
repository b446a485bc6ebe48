"""The CUDA path measured: parity of every part against the CPU, throughput per precision and
batch against this GPU's own matmul ceilings, and batched MTCNN face detection.

Used by `dfwatch bench --device cuda` (daemon/benchmarks/cuda.py), which adds the end-to-end runs. Every
ratio is against a ceiling measured in the same run (a large matrix product at that precision),
because datasheet peaks are leads, not readings.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import numpy as np
import torch

from daemon.benchmarks.measure import cuda_timed, flops_of, timed
from engines.backends import TorchRunner
from engines.families import FAMILIES

# 2D convolution parts (channels-last means something for them) and parts whose output is P(fake)
CHANNELS_LAST_PARTS = {p.name for f in FAMILIES.values() for p in f.parts if p.channels_last}
PROBABILITY_PARTS = {p.name for f in FAMILIES.values() for p in f.parts if p.outputs == ("probability",)}

# How far a CUDA part may be from the CPU float32 result (relative L2 error of its output):
# float32 with TF32 off differs only in summation order (~1e-6); TF32 and half-precision products
# carry 10-bit (fp16, tf32) or 7-bit (bf16) mantissas, ~1e-3 to 1e-2 after dozens of layers.
# The verdict is what a user sees: the head's probability may move at most 0.01 (the score is
# shown with two decimals and a threshold at 0.5 flips only windows within 0.01 of it).
PARITY_BOUND = {"fp32": 1e-4, "tf32": 2e-2, "fp16": 2e-2, "bf16": 5e-2}
PROBABILITY_BOUND = 0.01


@dataclass(frozen=True)
class Variant:
    precision: str
    channels_last: bool = True
    cuda_graphs: bool = False

    @property
    def name(self) -> str:
        return self.precision + ("" if self.channels_last else " NCHW") + (" +graphs" if self.cuda_graphs else "")


# Fastest candidates first: a sweep cut short by its time budget loses the slow variants.
VARIANTS = (Variant("fp16", cuda_graphs=True), Variant("bf16", cuda_graphs=True), Variant("fp16"),
            Variant("fp16", channels_last=False), Variant("tf32", cuda_graphs=True), Variant("fp32", channels_last=False))


def machine() -> dict:
    props = torch.cuda.get_device_properties(0)
    out = {"gpu": props.name, "sms": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().split(", ")
        out.update(driver=smi[0], max_sm_clock=smi[1])
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass
    return out


def matmul_ceilings(n: int = 8192) -> dict:
    """TFLOP/s of an n x n x n product per precision (random data), and device copy GB/s."""
    out = {}
    for precision, dtype in (("fp32", torch.float32), ("tf32", torch.float32), ("fp16", torch.float16),
                             ("bf16", torch.bfloat16)):
        a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        out[precision] = 2 * n ** 3 / cuda_timed(lambda: a @ b, min_seconds=0.5) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    src = torch.randn(2**28, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    out["copy_gb_s"] = 2 * src.numel() * 4 / cuda_timed(lambda: dst.copy_(src)) / 1e9
    return out


# ---- parity --------------------------------------------------------------------------------

def _errors(out: np.ndarray, ref: np.ndarray) -> dict:
    diff = out.astype(np.float64) - ref
    return {"rel_l2": float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-30)),
            "rel_max": float(np.abs(diff).max() / max(np.abs(ref).max(), 1e-30)),
            "finite": bool(np.isfinite(out).all())}


def parity(modules: dict, inputs: dict, precisions=("fp32", "tf32", "fp16", "bf16")) -> list[dict]:
    """Each part on CUDA at each precision (eager and with CUDA graphs) against torch on the CPU in
    float32, on the given (real) inputs."""
    rows = []
    for part, module in modules.items():
        ref = TorchRunner(part, module, "cpu").run(*inputs[part]).astype(np.float64)
        for precision in precisions:
            for graphs in (False, True):
                runner = TorchRunner(part, module, "cuda", precision, part in CHANNELS_LAST_PARTS, graphs)
                out = runner.run(*inputs[part])
                err = _errors(out, ref)
                probability = part in PROBABILITY_PARTS
                bound = PROBABILITY_BOUND if probability else PARITY_BOUND[precision]
                measure = np.abs(out - ref).max() if probability else err["rel_l2"]
                rows.append({"part": part, "precision": precision, "cuda_graphs": graphs, **err,
                             "checked": "max |Δprobability|" if probability else "rel_l2",
                             "value": float(measure), "bound": bound, "ok": err["finite"] and measure <= bound})
                module.cpu()
    return rows


# ---- throughput ----------------------------------------------------------------------------

def sweep(part: str, module, sample_shapes: list[tuple], flops: int, batches, variants, ceilings: dict,
          deadline: float) -> list[dict]:
    """Samples/s per variant and batch on device-resident random inputs; TFLOP/s and the ratio to
    this run's matmul ceiling at the variant's precision. Stops at `deadline` (time.monotonic())."""
    rows = []
    for v in _effective(variants, part):
        runner = TorchRunner(part, module, "cuda", v.precision, v.channels_last, v.cuda_graphs)
        for batch in batches:
            if time.monotonic() > deadline:
                rows.append({"part": part, "variant": v.name, "batch": batch, "skipped": "time budget"})
                return rows
            x = [torch.randn((batch, *s), device="cuda") for s in sample_shapes]
            try:
                seconds = cuda_timed(lambda r=runner: r.run_device(*x))
            except torch.OutOfMemoryError:
                rows.append({"part": part, "variant": v.name, "batch": batch, "skipped": "out of memory"})
                torch.cuda.empty_cache()
                break
            tflops = flops * batch / seconds / 1e12
            rows.append({"part": part, "variant": v.name, "precision": v.precision, "batch": batch,
                         "ms": seconds * 1000, "per_s": batch / seconds, "tflops": tflops,
                         "of_ceiling": tflops / ceilings[v.precision]})
        del runner
        module.cpu()
        torch.cuda.empty_cache()
    return rows


def _effective(variants, part: str) -> list[Variant]:
    """The variants as they apply to a part (channels-last only means something for 2D convolutions),
    each once."""
    out = []
    for v in variants:
        v = v if part in CHANNELS_LAST_PARTS else Variant(v.precision, False, v.cuda_graphs)
        if v not in out:
            out.append(v)
    return out


def part_flops(module, sample_shapes: list[tuple]) -> int:
    return flops_of(module.cpu().eval(), *[torch.randn((1, *s)) for s in sample_shapes])


# ---- face detection ------------------------------------------------------------------------

def mtcnn_sweep(frames_bgr: list[np.ndarray], settings, batches, deadline: float) -> dict:
    """Frames/s of MTCNN on CUDA per batch: facenet-pytorch's detect_face against engines.pipeline.mtcnn
    (the daemon's path), both from BGR frames at capture size, host preprocessing included; the
    faces both find; and where the daemon's path spends its time."""
    from facenet_pytorch.models.utils.detect_face import detect_face

    from engines.pipeline.mtcnn import detect_faces, pyramid_scales
    from engines.pipeline.preprocess import FaceDetector

    detector = FaceDetector(settings, "cuda")
    s = settings
    scale = min(1.0, s.detect_width / frames_bgr[0].shape[1])

    def library(batch):  # the same detection-size images, then facenet-pytorch's own detect_face
        small = detector.detection_images(batch, scale).cpu().numpy()
        with torch.no_grad():
            return detect_face(small, s.min_face_size, detector.pnet, detector.rnet, detector.onet,
                               list(s.thresholds), s.factor, detector.device)

    def pnet_only(images):
        imgs = images.permute(0, 3, 1, 2).float()
        h, w = imgs.shape[2:]
        with torch.no_grad():
            for sc in pyramid_scales(h, w, s.min_face_size, s.factor):
                data = torch.nn.functional.interpolate(imgs, size=(int(h * sc + 1), int(w * sc + 1)), mode="area")
                detector.pnet((data - 127.5) * 0.0078125)
        torch.cuda.synchronize()

    rows, agreement = [], None
    for batch in batches:
        if time.monotonic() > deadline:
            rows.append({"batch": batch, "skipped": "time budget"})
            break
        chunk = [frames_bgr[i % len(frames_bgr)] for i in range(batch)]
        repeats = 3 if batch >= 64 else 5
        t_lib = timed(lambda: library(chunk), repeats)
        t_new = timed(lambda: (detector.detect(chunk), torch.cuda.synchronize()), repeats)
        t_host = timed(lambda: (detector.detection_images(chunk, scale), torch.cuda.synchronize()), repeats)
        small = detector.detection_images(chunk, scale)
        t_pnet = timed(lambda: pnet_only(small), repeats)
        t_core = timed(lambda: (detect_faces(small, s.min_face_size, detector.pnet, detector.rnet, detector.onet,
                                             s.thresholds, s.factor), torch.cuda.synchronize()), repeats)
        rows.append({"batch": batch, "library_fps": batch / t_lib, "dfwatch_fps": batch / t_new,
                     "speedup": t_lib / t_new, "prepare_ms": t_host * 1000, "pnet_pyramid_ms": t_pnet * 1000,
                     "detect_on_gpu_ms": t_core * 1000, "total_ms": t_new * 1000})
        if agreement is None and batch >= 32:
            faces = [[f.box for f in found] for found in detector.detect(chunk)]
            library_boxes = [[b[:4] / scale for b in np.asarray(bb).reshape(-1, 5) if b[4] >= s.min_probability]
                             for bb in library(chunk)[0]]
            agreement = _agreement(library_boxes, faces)
            agreement["cpu_path"] = _agreement([[f.box for f in found] for found in
                                                FaceDetector(settings, "cpu").detect(chunk)], faces)
    return {"rows": rows, "agreement": agreement}


def _agreement(reference: list, boxes: list) -> dict:
    """Frames where both detectors found as many faces, and how far apart their boxes are (frame
    pixels): facenet-pytorch or the CPU detector as `reference`, the CUDA detector's `boxes`."""
    same = [(a, b) for a, b in zip(reference, boxes) if len(a) == len(b)]
    worst = max((float(np.abs(x - y).max()) for a, b in same for x, y in zip(a, b)), default=0.0)
    return {"frames": len(boxes), "same_face_count": len(same), "faces": sum(len(b) for b in boxes),
            "max_box_diff_px": worst}
