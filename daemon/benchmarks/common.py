"""What the benchmarks share: the bundles they measure (the demo bundles, built when missing, or
--bundle), the footage, and their results files."""
from __future__ import annotations

import json
from pathlib import Path

from engines.cli import setup
from engines.footage import footage as sample_footage


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


def write_results(out: Path, stem: str, result: dict, text: str) -> str:
    """`stem`.json and `stem`.md into `out`; returns the text (printed too)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(text)
    return text


def one_bundle(args) -> tuple[Path, Path, str]:
    """(bundle, footage, the command's --family words) of a benchmark that runs one bundle: --bundle,
    or the demo bundle of --family (the default family's when it is 'all')."""
    from engines.families import DEFAULT_FAMILY

    setup(args, "bench")
    if args.family == "all" and not args.bundle:
        args.family = DEFAULT_FAMILY
    footage = Path(args.footage) if args.footage else sample_footage(fetch_missing=True)
    return next(iter(bench_bundles(args).values())), footage, "" if args.bundle else f" --family {args.family}"


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


def _plain(value):
    """JSON for numpy scalars (np.bool_, np.float32) in results."""
    return value.item() if hasattr(value, "item") else str(value)


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
