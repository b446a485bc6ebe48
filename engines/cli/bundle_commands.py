"""`dfwatch engines`: assemble, describe, export (ONNX) and build (TensorRT) model bundles."""
from __future__ import annotations

import argparse

from engines.cli import UserError, common_options, setup


def register(sub) -> None:
    p = sub.add_parser("engines", help="model bundles: assemble, describe, export to ONNX, build TensorRT engines")
    esub = p.add_subparsers(dest="engines_command", required=True, metavar="ACTION")

    b = esub.add_parser("bundle", parents=[common_options()], help="assemble a bundle from official checkpoints")
    b.add_argument("--family", choices=["stylegru", "dldfd"], default="stylegru",
                   help="stylegru (pSp + 3D ResNet-50 + StyleGRU head; default) or dldfd (frame-level 2D detector)")
    b.add_argument("--psp", metavar="PSP.pt", help="stylegru: pSp checkpoint (psp_ffhq_encode.pt)")
    b.add_argument("--r3d", metavar="SLOW.pyth", help="stylegru: pytorchvideo slow_r50 (SLOW_8x8_R50.pyth)")
    b.add_argument("--head", metavar="HEAD.pt", help="stylegru: trained head from 'dfwatch train'; without it the "
                                                     "bundle is marked untrained and every verdict says so")
    b.add_argument("--resnet50", metavar="RESNET50.pth", help="dldfd: torchvision ResNet-50 ImageNet weights "
                                                              "(untrained bundle to start 'dfwatch train' from)")
    b.add_argument("--model", metavar="MODEL.pt", help="dldfd: a trained model from 'dfwatch train fit'")
    b.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    b.add_argument("--levels", default="9", help="style levels, comma separated (default 9; 0-17 for all)")
    b.add_argument("--frames", type=int, default=32, help="window length T (default 32)")
    b.add_argument("--clip-frames", type=int, default=16, help="frames per content clip (default 16)")
    b.add_argument("--fps", type=float, default=3.0, help="analysis frame rate (default 3; training export "
                                                          "records the real one)")
    b.add_argument("--threshold", type=float, default=0.5, help="decision threshold on P(fake)")
    b.add_argument("--id", help="bundle id (default: derived from the head's checksum)")
    b.add_argument("--trust", action="store_true", help="allow checkpoints that need arbitrary pickles")
    b.set_defaults(handler=_bundle)

    i = esub.add_parser("info", parents=[common_options()], help="validate a bundle and describe it")
    i.add_argument("bundle", metavar="BUNDLE")
    i.set_defaults(handler=_info)

    e = esub.add_parser("export", parents=[common_options()], help="export a bundle's models to ONNX")
    e.add_argument("bundle", metavar="BUNDLE")
    e.add_argument("--parts", help="comma-separated parts (default: all of the bundle's family)")
    e.set_defaults(handler=_export)

    t = esub.add_parser("build", parents=[common_options()],
                        help="build TensorRT engines for a bundle (needs an NVIDIA GPU)")
    t.add_argument("bundle", metavar="BUNDLE")
    t.add_argument("--precision", choices=["fp16", "int8"], default="fp16")
    t.add_argument("--calibration", metavar="DIR", help="INT8: a folder of 256x256 face-crop images "
                                                       "(the crops/ folder of a 'dfwatch train extract' cache)")
    t.set_defaults(handler=_build)


def _levels(text: str) -> tuple[int, ...]:
    if text.strip() in ("all", "0-17"):
        return tuple(range(18))
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--levels {text!r}: expected comma-separated integers 0-17, e.g. 9 or 0,9,17") from None


def _bundle(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import assemble, describe
    from engines.pipeline.preprocess import CropSpec

    config = setup(args, "engines")
    crop = CropSpec(method=config.faces.crop, margin=config.faces.margin, select=config.faces.select,
                    smoothing=config.faces.smoothing)
    trust = args.trust or config.model.trust_checkpoints
    if args.family == "dldfd":
        return _bundle_dldfd(args, crop, trust)
    if not (args.psp and args.r3d) or args.resnet50 or args.model:
        raise UserError("a stylegru bundle needs --psp PSP.pt and --r3d SLOW.pyth; --resnet50/--model "
                        "are for --family dldfd")
    if args.frames % args.clip_frames:
        raise UserError(f"--frames {args.frames} must be a multiple of --clip-frames {args.clip_frames}")
    bundle = assemble(args.out, args.psp, args.r3d, args.head, levels=_levels(args.levels), frames=args.frames,
                      clip_frames=args.clip_frames, fps=args.fps, threshold=args.threshold, crop=crop,
                      bundle_id=args.id, trust=trust)
    print(describe(bundle))
    return 0


def _bundle_dldfd(args: argparse.Namespace, crop, trust: bool) -> int:
    from engines.bundles.bundle import assemble_dldfd, describe

    stray = [flag for flag, value in (("--psp", args.psp), ("--r3d", args.r3d), ("--head", args.head)) if value]
    if stray:
        raise UserError(f"{', '.join(stray)}: StyleGRU files; a dldfd bundle takes --resnet50 or --model")
    if bool(args.resnet50) == bool(args.model):
        raise UserError("a dldfd bundle needs exactly one of --resnet50 RESNET50.pth (ImageNet weights: untrained) "
                        "or --model MODEL.pt (trained by 'dfwatch train fit')")
    bundle = assemble_dldfd(args.out, resnet50=args.resnet50, model=args.model, frames=args.frames, fps=args.fps,
                            threshold=args.threshold, crop=crop, bundle_id=args.id, trust=trust)
    print(describe(bundle))
    return 0


def _info(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe, load_bundle

    setup(args, "engines")
    print(describe(load_bundle(args.bundle)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import describe
    from engines.bundles.export import IO_NAMES, export_bundle

    setup(args, "engines")
    parts = tuple(p.strip() for p in args.parts.split(",")) if args.parts else None
    unknown = [p for p in parts or () if p not in IO_NAMES]
    if unknown:
        raise UserError(f"--parts: unknown part(s) {', '.join(unknown)}; choose from {', '.join(IO_NAMES)}")
    print(describe(export_bundle(args.bundle, parts)))
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
