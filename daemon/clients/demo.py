"""`dfwatch demo`: the daemon on sample footage, on a machine with no weights and no network.

By default the MesoNet family: a bundle of its published weights, which ship with dfwatch, so
the verdicts are a real, trained detector's (`untrained: false`, the model named after its weight
file). `--family` another: a bundle built (once) from stand-in weights in the official file
layouts (with the head the training module produced for the demo if there is one, else an
untrained head), whose verdicts say `model: demo-…` and `untrained: true`. Then `dfwatch run` on
the fetched sample footage (looped) shows the verdicts until Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from daemon.wire.endpoints import resolve
from daemon.service.supervisor import die_with_parent
from daemon.clients.watch import watch
from engines.cache import user_cache_dir
from engines.cli import UserError
from engines.footage import footage as sample_footage
from engines.logs import get_logger

log = get_logger()
DEMO_SEED = 2024
DEMO_TRAINED_PART = "head"  # the demo head (DFWATCH_DEMO_HEAD, else head.pt in the demo cache) is a head
def cache_root() -> Path:
    return user_cache_dir("demo")


def demo_head() -> Path | None:
    """A head trained for the demo by the training module, if one was exported there."""
    path = Path(os.environ.get("DFWATCH_DEMO_HEAD", cache_root() / "head.pt"))
    return path if path.is_file() else None


def bundle_dir(family: str) -> Path:
    from engines.families import DEFAULT_FAMILY

    return cache_root() / ("bundle" if family == DEFAULT_FAMILY else f"bundle-{family}")  # older demos' names


def build_demo_bundle(root: Path, family: str, trained: Path | None = None) -> None:
    """The family's bundle from stand-in weights (with `trained` as its trained part, if given),
    exported to ONNX and named demo-FAMILY-STATE-CHECKSUM."""
    from engines.bundles.bundle import load_bundle, with_id
    from engines.bundles.export import export_bundle
    from engines.families import get_family

    spec = get_family(family)
    what = "its published weights" if spec.demo_is_real else "stand-in weights"
    print(f"dfwatch demo: building the {spec.title} demo bundle ({what}; once) ...", flush=True)
    bundle = load_bundle(spec.build_demo(root, DEMO_SEED, trained))
    if not spec.demo_is_real:   # a real detector keeps its own name (its weight file's)
        state = "trained" if trained else "untrained"
        with_id(bundle, f"demo-{family}-{state}-{bundle.manifest.files[spec.trained_part].sha256[:8]}")
    export_bundle(root)


def demo_trained_part(family: str) -> Path | None:
    """The trained part the training module made for the demo (the StyleGRU head), if any."""
    from engines.families import get_family

    return demo_head() if get_family(family).trained_part == DEMO_TRAINED_PART else None


def usable(bundle: Path) -> bool:
    """A cached demo bundle this version can serve (one from an older dfwatch is rebuilt)."""
    from engines.bundles.bundle import load_bundle
    from engines.errors import DfwatchError

    try:
        b = load_bundle(bundle)
        b.module(b.spec.trained_part)
        return True
    except DfwatchError:
        return False


def _interrupt(*_):
    raise KeyboardInterrupt


def run_demo(config, args, child_options: list[str]) -> int:
    """`child_options`: the command-line options the daemon must see too (daemon.cli.passthrough)."""
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    if not footage.is_file():
        raise UserError(f"no such video file: {footage}")
    bundle = bundle_dir(args.family)
    if args.rebuild or not usable(bundle):
        build_demo_bundle(bundle, args.family, demo_trained_part(args.family))
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle), "--stream", f"demo={footage}",
            "--set", "capture.loop=true", *child_options]
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
