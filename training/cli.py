"""`dfwatch train extract | fit | eval | export`: from a dataset to a bundle the daemon serves."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engines.cli import UserError, common_options, setup


def register(sub) -> None:
    p = sub.add_parser("train", help="offline training: extract features, fit, evaluate, export a bundle")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="STEP")

    e = tsub.add_parser("extract", parents=[common_options()],
                        help="sample frames, crop faces, cache style and content features per video")
    e.add_argument("--bundle", required=True, metavar="DIR", help="bundle whose encoders and preprocessing to use")
    e.add_argument("--dataset", required=True, metavar="ROOT", help="dataset root")
    e.add_argument("--layout", default="auto", choices=["auto", "faceforensics", "celebdf", "generic"])
    e.add_argument("--splits", default="train,val,test", help="comma-separated splits (default train,val,test)")
    e.add_argument("--cache", required=True, metavar="DIR", help="feature cache directory")
    e.add_argument("--frames", type=int, help="frames per video (default: the bundle's window, 32; 64 works too)")
    e.add_argument("--quality", default="c23", help="FaceForensics++ quality (c23, c40, raw)")
    e.add_argument("--batch", type=int, default=8, help="faces per model call")
    e.add_argument("--save-crops", action="store_true", help="keep a few face crops per video in CACHE/crops "
                                                             "(INT8 calibration for 'dfwatch engines build')")
    e.set_defaults(handler=_extract)

    f = tsub.add_parser("fit", parents=[common_options()], help="train the head on cached features")
    f.add_argument("--cache", required=True, metavar="DIR")
    f.add_argument("--out", required=True, metavar="RUN", help="run directory: head.pt, history.json, tensorboard/")
    f.add_argument("--epochs", type=int, default=100)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--weight-decay", type=float, default=1e-2)
    f.add_argument("--mixup-alpha", type=float, default=0.5)
    f.add_argument("--mixup-prob", type=float, default=0.7)
    f.add_argument("--patience", type=int, default=12)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--gru-hidden", type=int, help="head GRU width (default 512)")
    f.add_argument("--width", type=int, help="head token width (default 256)")
    f.set_defaults(handler=_fit)

    v = tsub.add_parser("eval", parents=[common_options()],
                        help="evaluate a head on a cached split: metrics, plots, JSON report")
    v.add_argument("--cache", required=True, metavar="DIR", help="feature cache of any dataset")
    v.add_argument("--split", default="test")
    source = v.add_mutually_exclusive_group(required=True)
    source.add_argument("--head", metavar="HEAD.pt", help="a head from 'train fit' (RUN/head.pt)")
    source.add_argument("--bundle", metavar="DIR", help="the head of an exported bundle")
    v.add_argument("--out", required=True, metavar="DIR", help="report.json and PNG plots go here")
    v.add_argument("--threshold", type=float, default=None, help="decision threshold (default: bundle's, else 0.5)")
    v.set_defaults(handler=_eval)

    x = tsub.add_parser("export", parents=[common_options()], help="write a bundle the daemon loads")
    x.add_argument("--bundle", required=True, metavar="DIR", help="the bundle the features were extracted with")
    x.add_argument("--head", required=True, metavar="HEAD.pt", help="RUN/head.pt from 'train fit'")
    x.add_argument("--out", required=True, metavar="DIR")
    x.add_argument("--threshold", type=float, help="decision threshold (default: the source bundle's)")
    x.add_argument("--report", metavar="REPORT.json", help="an eval report to record in the manifest")
    x.add_argument("--id", help="bundle id")
    x.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    x.set_defaults(handler=_export)


def _extract(args: argparse.Namespace) -> int:
    from engines.analysis import StreamAnalysis, WindowSpec
    from engines.bundle import load_bundle
    from engines.preprocess import DetectorSettings, FaceDetector
    from engines.runners import open_runners
    from training.datasets import index_dataset
    from training.extract import extract

    config = setup(args, "train")
    bundle = load_bundle(args.bundle)
    frames = args.frames or bundle.frames
    if frames % bundle.clip_frames:
        raise UserError(f"--frames {frames} must be a multiple of the bundle's clip length {bundle.clip_frames}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    options = {"quality": args.quality} if args.layout == "faceforensics" else {}
    videos = [v for split in splits for v in index_dataset(args.dataset, split, args.layout, **options)]
    m = config.model
    runners, choice = open_runners(bundle, m.backend, m.device, m.threads)
    detector = FaceDetector(DetectorSettings.from_config(config.faces), device=choice.device)
    spec = WindowSpec(frames, frames, bundle.clip_frames, config.window.min_face_fraction)
    cache = Path(args.cache)
    counts = extract(videos, cache, bundle, runners, detector, frames,
                     lambda: StreamAnalysis(spec, bundle.crop, bundle.style_norm, bundle.content_norm),
                     batch=args.batch, crops_dir=cache / "crops" if args.save_crops else None)
    print(json.dumps(counts))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from training.features import load_features
    from training.fit import FitConfig, fit

    setup(args, "train")
    head = {k: v for k, v in (("gru_hidden", args.gru_hidden), ("width", args.width)) if v}
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    mixup_prob=args.mixup_prob, mixup_alpha=args.mixup_alpha, patience=args.patience,
                    seed=args.seed, head=head)
    summary = fit(load_features(args.cache, "train"), load_features(args.cache, "val"), cfg, Path(args.out))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from engines.bundle import load_bundle
    from engines.checkpoints import load_head
    from engines.models.stylegru import StyleGRUProbability
    from engines.runners import TorchRunner
    from training.evaluate import evaluate
    from training.features import load_features

    setup(args, "train")
    if args.bundle:
        bundle = load_bundle(args.bundle)
        head_path, threshold = bundle.path("head"), bundle.threshold
    else:
        head_path, threshold = Path(args.head), 0.5
    threshold = args.threshold if args.threshold is not None else threshold
    head = load_head(head_path)
    history_file = head_path.parent / "history.json"
    history = json.loads(history_file.read_text())["history"] if history_file.is_file() else None
    runner = TorchRunner("head", StyleGRUProbability(head))
    report = evaluate(runner, load_features(args.cache, args.split), threshold, Path(args.out), history,
                      about={"cache": str(args.cache), "split": args.split, "head": str(head_path)})
    keys = ("videos", "accuracy", "precision", "recall", "f1", "roc_auc", "eer", "average_precision")
    print(json.dumps({k: report[k] for k in keys}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from engines.bundle import derive, describe, load_bundle
    from engines.checkpoints import read_checkpoint
    from engines.export import export_bundle

    setup(args, "train")
    source = load_bundle(args.bundle)
    extra = read_checkpoint(args.head).get("extra", {})
    summary = json.loads(extra.get("summary", "{}"))
    spacing = summary.get("frame_spacing_s") or 0.0
    training = {"fit": summary}
    if args.report:
        report = json.loads(Path(args.report).read_text())
        training["eval"] = {k: report[k] for k in ("videos", "accuracy", "f1", "roc_auc", "eer", "average_precision")
                            if k in report} | {"about": report.get("about", {})}
        training["metrics"] = {k: report[k] for k in ("accuracy", "roc_auc") if report.get(k) is not None}
    bundle = derive(source, Path(args.out), Path(args.head), fps=1.0 / spacing if spacing > 0 else None,
                    threshold=args.threshold, training=training, bundle_id=args.id)
    if not args.no_onnx:
        bundle = export_bundle(bundle.root)
    print(describe(bundle))
    return 0
