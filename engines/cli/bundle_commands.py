"""`dfwatch engines`: assemble, describe, export (ONNX) and build (TensorRT) model bundles."""
from __future__ import annotations

import argparse

from engines.cli import UserError, common_options, setup
from engines.errors import DfwatchError
from engines.families import DEFAULT_FAMILY, FAMILIES, family_names, get_family


def register(sub) -> None:
    p = sub.add_parser("engines", help="model bundles: assemble, describe, export to ONNX, build TensorRT engines")
    esub = p.add_subparsers(dest="engines_command", required=True, metavar="ACTION")

    b = esub.add_parser("bundle", parents=[common_options()], help="assemble a bundle from official checkpoints")
    b.add_argument("--family", choices=family_names(), default=DEFAULT_FAMILY,
                   help="; ".join(f"{f.name}: {f.summary}" for f in FAMILIES.values()) + f" (default {DEFAULT_FAMILY})")
    for flag, (source, names) in _source_flags().items():  # a flag several families take is one option
        b.add_argument(flag, metavar=source.metavar, help=f"{'/'.join(names)}: {source.help}")
    b.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    b.add_argument("--levels", default="9", type=_levels,
                   help="stylegru: style levels, comma separated (default 9; 0-17 for all)")
    b.add_argument("--frames", type=int, default=32, help="window length T (default 32)")
    b.add_argument("--clip-frames", type=int, default=16, help="stylegru: frames per content clip (default 16)")
    b.add_argument("--style-size", type=int, default=256,
                   help="stylegru: the style encoder's input size (default 256, the published; smaller only for "
                        "fast experiments on a CPU)")
    b.add_argument("--fps", type=float, default=3.0, help="analysis frame rate (default 3; training export "
                                                          "records the real one)")
    b.add_argument("--threshold", type=float, help="decision threshold on P(fake) (default: the family's: 0.5, "
                                                    "MesoNet's measured one)")
    b.add_argument("--id", help="bundle id (default: derived from the head's checksum)")
    b.add_argument("--trust", action="store_true", help="allow checkpoints that need arbitrary pickles")
    b.set_defaults(handler=_bundle)

    n = esub.add_parser("ensemble", parents=[common_options()],
                        help="one bundle of several frame-level bundles: their P(fake) averaged per face")
    n.add_argument("members", nargs="+", metavar="BUNDLE", help="trained frame-level bundles sharing one face crop "
                                                                "(e.g. MesoNet's DF and F2F bundles)")
    n.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    n.add_argument("--threshold", type=float, help="decision threshold on the mean P(fake) (default: the first "
                                                    "member's)")
    n.add_argument("--id", help="bundle id (default: ensemble-<member ids>)")
    n.set_defaults(handler=_ensemble)

    i = esub.add_parser("info", parents=[common_options()], help="validate a bundle and describe it")
    i.add_argument("bundle", metavar="BUNDLE")
    i.set_defaults(handler=_info)

    e = esub.add_parser("export", parents=[common_options()], help="export a bundle's models to ONNX")
    e.add_argument("bundle", metavar="BUNDLE")
    e.add_argument("--parts", help="comma-separated parts (default: all of the bundle's family)")
    e.set_defaults(handler=_export)

    q = esub.add_parser("quantize", parents=[common_options()],
                        help="INT8 ONNX models for the CPU, calibrated on face crops (model.precision: int8)")
    q.add_argument("bundle", metavar="BUNDLE")
    q.add_argument("--calibration", required=True, metavar="CROPS_DIR",
                   help="face-crop images made by the bundle's preprocessing (the crops/ folder of "
                        "'dfwatch train extract --save-crops'); held-out footage is for measuring, not this")
    q.add_argument("--parts", help="comma-separated parts (default: those that run per frame or per clip)")
    q.add_argument("--limit", type=int, default=256, help="use at most this many crops (default 256)")
    q.set_defaults(handler=_quantize)

    t = esub.add_parser("build", parents=[common_options()],
                        help="build TensorRT engines for a bundle (needs an NVIDIA GPU)")
    t.add_argument("bundle", metavar="BUNDLE")
    t.add_argument("--precision", choices=["fp16", "int8"], default="fp16")
    t.add_argument("--calibration", metavar="DIR", help="INT8: a folder of 256x256 face-crop images "
                                                       "(the crops/ folder of a 'dfwatch train extract' cache)")
    t.set_defaults(handler=_build)
    from engines.cli.triton_commands import register_repo

    register_repo(esub)


def _source_flags() -> dict:
    """flag -> (its SourceOption, the families that take it), in registry order."""
    flags: dict = {}
    for family in FAMILIES.values():
        for source in family.sources:
            flags.setdefault(source.flag, (source, []))[1].append(family.name)
    return flags


def _levels(text: str) -> tuple[int, ...]:
    if text.strip() in ("all", "0-17"):
        return tuple(range(18))
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers 0-17, e.g. 9 or 0,9,17") from None


def _bundle(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe, load_bundle
    from engines.pipeline.specs import CropSpec

    config = setup(args, "engines")
    crop = CropSpec(method=config.faces.crop, margin=config.faces.margin, select=config.faces.crop_select,
                    smoothing=config.faces.smoothing)
    family = get_family(args.family)
    if args.threshold is None:
        args.threshold = family.threshold_for(args)
    own = {s.flag for s in family.sources}
    for flag, (source, names) in _source_flags().items():
        if flag not in own and getattr(args, source.dest):
            raise UserError(f"{flag}: a file for --family {'/'.join(names)}; a {family.name} bundle takes "
                            f"{family.sources_hint}")
    try:
        bundle = load_bundle(family.assemble_from_args(args, crop, args.trust or config.model.trust_checkpoints))
    except DfwatchError as e:
        raise UserError(str(e)) from None
    print(describe(bundle))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe, load_bundle
    from engines.families.ensemble import assemble

    setup(args, "engines")
    try:
        members = [load_bundle(m) for m in args.members]
        bundle = load_bundle(assemble(args.out, members, args.threshold, args.id))
    except DfwatchError as e:
        raise UserError(str(e), exit_code=2) from None
    print(describe(bundle))
    return 0


def _info(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe, load_bundle

    setup(args, "engines")
    print(describe(load_bundle(args.bundle)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe
    from engines.bundles.export import export_bundle

    setup(args, "engines")
    parts = tuple(p.strip() for p in args.parts.split(",")) if args.parts else None
    known = [p.name for f in FAMILIES.values() for p in f.parts]
    unknown = [p for p in parts or () if p not in known]
    if unknown:
        raise UserError(f"--parts: unknown part(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    print(describe(export_bundle(args.bundle, parts)))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe
    from engines.bundles.quantize import quantize_bundle

    setup(args, "engines")
    parts = tuple(p.strip() for p in args.parts.split(",")) if args.parts else None
    bundle = quantize_bundle(args.bundle, args.calibration, parts, args.limit,
                             on_part=lambda p: print(f"quantizing {p} ...", flush=True))
    print(describe(bundle))
    return 0


def _build(args: argparse.Namespace) -> int:
    import torch

    config = setup(args, "engines")
    if not torch.cuda.is_available():
        raise UserError("no NVIDIA GPU is visible here: TensorRT engines can only be built on the machine "
                        "(GPU model and TensorRT version) that will run them")
    from engines.bundles.bundle import load_bundle
    from engines.backends.tensorrt import TensorRTSettings, calibration_batches, ensure_engines

    bundle = load_bundle(args.bundle)
    calibration = None
    if args.precision == "int8":
        if not args.calibration:
            raise UserError("--precision int8 needs --calibration DIR (face crops, e.g. from 'dfwatch train extract')")
        calibration = calibration_batches(args.calibration, config.tensorrt.opt_batch, bundle.frame_norm)
    settings = TensorRTSettings.from_config(config.tensorrt, args.precision)
    for part, path in ensure_engines(bundle, settings, calibration,
                                     on_build=lambda p: print(f"building the {p} engine ...")).items():
        print(f"{part:8} {path}")
    return 0
