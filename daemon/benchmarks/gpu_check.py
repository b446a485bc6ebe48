"""GPU check for a bundle: build the TensorRT engines, compare them with torch, print throughput.

    scripts/gpu-check.sh [BUNDLE]      (python -m daemon.benchmarks.gpu_check [BUNDLE])

Without BUNDLE it checks one bundle of each family, assembled from official-format checkpoints
generated with ../shared/parity/make_checkpoint.py (a StyleGRU bundle from pSp and slow_r50
files, a DLDFD bundle from a torchvision-layout ResNet-50 file). Exit 0 when every part is within `max|trt - torch| <=
1e-2 * max|torch|` at FP16, 1 otherwise, 2 when there is no GPU or TensorRT.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TOLERANCE = 1e-2


def _demo_bundles(folder: Path, shared: Path) -> list:
    import torchvision

    from engines.bundles.export import export_bundle
    from engines.families import dldfd, stylegru

    spec = importlib.util.spec_from_file_location("make_checkpoint", shared / "parity" / "make_checkpoint.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    keys = shared / "checkpoints"
    torch.save(mc.build_psp(0, keys / "psp_encoder_keys.tsv", keys / "psp_decoder_keys.tsv"), folder / "psp.pt")
    torch.save(mc.build_slow_r50(0, keys / "slow_r50_keys.tsv"), folder / "slow.pyth")
    stylegru.assemble(folder / "a", folder / "psp.pt", folder / "slow.pyth")
    with torch.device("meta"):
        rows = [(k, tuple(v.shape)) for k, v in torchvision.models.resnet50().state_dict().items()]
    torch.save(mc.make_state_dict(rows, 0), folder / "resnet50.pth")
    dldfd.assemble(folder / "b", resnet50=folder / "resnet50.pth")
    return [export_bundle(folder / "a"), export_bundle(folder / "b")]


def check_bundle(bundle) -> bool:
    """Builds the bundle's engines and compares every part with torch at each profile batch."""
    from engines.bundles.export import example_inputs
    from engines.backends import TorchRunner
    from engines.backends.tensorrt import TensorRTRunner, TensorRTSettings, ensure_engines

    settings = TensorRTSettings()
    paths = ensure_engines(bundle, settings, on_build=lambda part: print(f"building {part} engine ...", flush=True))
    ok = True
    print(f"{bundle.family}: {bundle.id}")
    print(f"{'part':8} {'batch':>5} {'rel.err':>9} {'trt/s':>9} {'torch/s':>9}")
    for part, path in paths.items():
        trt_runner = TensorRTRunner(part, path)
        ref_runner = TorchRunner(part, bundle.module(part), "cuda")
        for batch in sorted({settings.min_batch, settings.opt_batch, settings.max_batch}):
            inputs = [x.numpy() for x in example_inputs(bundle, part, batch)]
            ref, out = ref_runner.run(*inputs), trt_runner.run(*inputs)
            err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12))
            ok &= err <= TOLERANCE
            print(f"{part:8} {batch:5d} {err:9.2e} {_throughput(trt_runner, inputs):9.1f} "
                  f"{_throughput(ref_runner, inputs):9.1f}{'' if err <= TOLERANCE else '  FAIL'}", flush=True)
    return ok


def _throughput(runner, inputs, repeats: int = 10) -> float:
    runner.run(*inputs)
    start = time.perf_counter()
    for _ in range(repeats):
        runner.run(*inputs)
    return repeats * inputs[0].shape[0] / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?")
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is None:
        print("gpu-check: needs an NVIDIA GPU and TensorRT (pip install -e '.[gpu]'); nothing checked", file=sys.stderr)
        return 2
    torch.backends.cudnn.allow_tf32 = False  # an exact fp32 reference (TF32 errors ~1e-3)
    torch.backends.cuda.matmul.allow_tf32 = False
    from engines.bundles.bundle import load_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundles = [load_bundle(args.bundle)] if args.bundle else _demo_bundles(Path(tmp), Path(args.shared))
        ok = all([check_bundle(b) for b in bundles])
    print("gpu-check: " + ("all parts within 1e-2 of torch" if ok else "FAILED: a part exceeds 1e-2"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
