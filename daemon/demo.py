"""`dfwatch demo`: the daemon on sample footage, on a machine with no weights and no network.

Builds (once) a demo bundle from stand-in weights in the official file layouts — with the head
the training module produced for the demo if there is one, else an untrained head — then runs
`dfwatch run` on the fetched sample footage (looped) and shows the verdicts until Ctrl-C. Every
verdict says `model: demo-…`; real detection needs the official weights and a trained head.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from daemon.endpoints import resolve
from daemon.supervisor import die_with_parent
from daemon.watch import watch
from engines.cli import UserError
from engines.logs import get_logger

log = get_logger()
REPO = Path(__file__).resolve().parents[1]
DEMO_SEED = 2024
DEMO_FPS = {"stylegru": 2.0,  # what a 2-core CPU sustains with 32-frame windows
            "dldfd": 6.0}     # the frame-level detector is ~15x cheaper per frame


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dfwatch" / "demo"


def demo_head() -> Path | None:
    """A head trained for the demo by the training module, if one was exported there."""
    path = Path(os.environ.get("DFWATCH_DEMO_HEAD", cache_root() / "head.pt"))
    return path if path.is_file() else None


def bundle_dir(family: str) -> Path:
    return cache_root() / ("bundle" if family == "stylegru" else f"bundle-{family}")


def build_demo_bundle(root: Path, head: Path | None = None, family: str = "stylegru") -> None:
    import torch

    from engines.bundles.bundle import assemble
    from engines.bundles.demo_weights import psp_checkpoint, slow_r50_checkpoint
    from engines.bundles.export import export_bundle

    if family == "dldfd":
        return build_demo_dldfd(root)
    print("dfwatch demo: building the demo bundle (stand-in weights; about a minute, once) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(psp_checkpoint(DEMO_SEED), Path(tmp) / "psp_demo.pt")
        torch.save(slow_r50_checkpoint(DEMO_SEED), Path(tmp) / "slow_r50_demo.pyth")
        bundle = assemble(root, Path(tmp) / "psp_demo.pt", Path(tmp) / "slow_r50_demo.pyth", head=head,
                          fps=DEMO_FPS["stylegru"], bundle_id="demo-pending")
    manifest_id = f"demo-{'trained' if head else 'untrained'}-{bundle.manifest['files']['head']['sha256'][:8]}"
    from engines.bundles.bundle import write_manifest

    write_manifest(root, {**bundle.manifest, "id": manifest_id})
    export_bundle(root)


def build_demo_dldfd(root: Path) -> None:
    """An untrained DLDFD bundle: stand-in ImageNet ResNet-50 weights, seeded stem and fc."""
    import torch

    from engines.bundles.bundle import assemble_dldfd
    from engines.bundles.demo_weights import resnet50_imagenet_checkpoint
    from engines.bundles.export import export_bundle

    print("dfwatch demo: building the DLDFD demo bundle (stand-in weights; seconds, once) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(resnet50_imagenet_checkpoint(DEMO_SEED), Path(tmp) / "resnet50_demo.pth")
        bundle = assemble_dldfd(root, resnet50=Path(tmp) / "resnet50_demo.pth", fps=DEMO_FPS["dldfd"],
                                seed=DEMO_SEED, bundle_id="demo-pending")
    from engines.bundles.bundle import write_manifest

    write_manifest(root, {**bundle.manifest, "id": f"demo-dldfd-untrained-{bundle.manifest['files']['frame']['sha256'][:8]}"})
    export_bundle(root)


def usable(bundle: Path) -> bool:
    """A cached demo bundle this version can serve (one from an older dfwatch is rebuilt)."""
    from engines.bundles.bundle import load_bundle
    from engines.errors import DfwatchError

    try:
        b = load_bundle(bundle)
        b.frame_model() if b.family == "dldfd" else b.head()
        return True
    except DfwatchError:
        return False


def _interrupt(*_):
    raise KeyboardInterrupt


def run_demo(config, args) -> int:
    footage = Path(args.footage) if args.footage else REPO / ".cache" / "footage" / "franck.mp4"
    if not footage.is_file():
        raise UserError(f"no sample footage at {footage}: run scripts/setup.sh (it fetches it) or pass --footage VIDEO")
    bundle = bundle_dir(args.family)
    if args.rebuild or not usable(bundle):
        build_demo_bundle(bundle, demo_head(), args.family)
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle), "--stream", f"demo={footage}",
            "--set", "capture.loop=true"]
    if args.config:
        argv += ["--config", args.config]
    for item in args.overrides:
        argv += ["--set", item]
    print(f"dfwatch demo: analysing {footage.name} with {bundle} — verdicts appear after the first window; "
          "Ctrl-C to stop", flush=True)
    log_path = cache_root() / "daemon.log"
    stderr = open(log_path, "ab") if sys.stdout.isatty() else None  # keep the live table clean
    if stderr:
        print(f"dfwatch demo: daemon log in {log_path}", flush=True)
    daemon = subprocess.Popen(argv, stderr=stderr, preexec_fn=die_with_parent)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return watch(resolve(config.endpoints).verdicts, timeout_s=120)
    except KeyboardInterrupt:
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
