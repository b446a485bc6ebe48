"""`dfwatch train extract | fit | eval | export | protocols`: from a dataset to a bundle the daemon
serves, for either model family (the family comes from the bundle, then from the cache)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engines.cli import Command, UserError, common_options, setup
from engines.families import CACHE_FACE_CROPS, CACHE_WINDOW_INPUTS


def register(sub) -> None:
    p = sub.add_parser("train", help="offline training: extract features, fit, evaluate, export a bundle")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="STEP")

    e = tsub.add_parser("extract", parents=[common_options()],
                        help="sample frames, crop faces, cache per video: style and content features "
                             "(stylegru) or face crops (dldfd)")
    e.add_argument("--bundle", required=True, metavar="DIR", help="bundle whose encoders and preprocessing to use")
    e.add_argument("--dataset", required=True, metavar="ROOT", help="dataset root")
    e.add_argument("--layout", default="auto", choices=["auto", "faceforensics", "celebdf", "generic"])
    e.add_argument("--splits", default="train,val,test", help="comma-separated splits (default train,val,test)")
    e.add_argument("--cache", required=True, metavar="DIR", help="feature cache directory")
    e.add_argument("--frames", type=int, help="frames per video (default: the bundle's window, 32; 64 works too)")
    e.add_argument("--quality", default="c23", help="FaceForensics++ quality (c23, c40, raw)")
    e.add_argument("--batch", type=int, default=8, help="faces per model call")
    e.add_argument("--save-crops", action="store_true", help="keep a few face crops per video in CACHE/crops "
                                                             "(INT8 calibration: 'dfwatch engines quantize', 'engines build')")
    e.set_defaults(handler=_extract)

    f = tsub.add_parser("fit", parents=[common_options()],
                        help="train the StyleGRU head on cached features, or a frame-level family (DLDFD, ICPR 2020) on cached face crops")
    f.add_argument("--cache", required=True, metavar="DIR")
    f.add_argument("--out", required=True, metavar="RUN", help="run directory: head.pt (stylegru) or model.pt "
                                                                "(dldfd), history.json, tensorboard/")
    f.add_argument("--bundle", metavar="DIR", help="dldfd: the bundle whose weights training starts from "
                                                   "(made with 'dfwatch engines bundle --family dldfd')")
    f.add_argument("--epochs", type=int, help="default 100 (stylegru), 25 (dldfd)")
    f.add_argument("--batch-size", type=int, help="default 16 (stylegru), 32 (dldfd)")
    f.add_argument("--lr", type=float, help="default 1e-4 (stylegru, AdamW), 1e-3 (dldfd, Adam)")
    f.add_argument("--no-flip", action="store_true", help="dldfd: no random horizontal flips")
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
    source.add_argument("--head", "--model", dest="head", metavar="FILE",
                        help="RUN/head.pt (stylegru) or RUN/model.pt (dldfd) from 'train fit'")
    source.add_argument("--bundle", metavar="DIR", help="the head of an exported bundle")
    v.add_argument("--out", required=True, metavar="DIR", help="report.json and PNG plots go here")
    v.add_argument("--threshold", type=float, default=None, help="decision threshold (default: bundle's, else 0.5)")
    v.set_defaults(handler=_eval)

    x = tsub.add_parser("export", parents=[common_options()], help="write a bundle the daemon loads")
    x.add_argument("--bundle", required=True, metavar="DIR", help="the bundle the features were extracted with")
    x.add_argument("--head", "--model", dest="head", required=True, metavar="FILE",
                   help="RUN/head.pt (stylegru) or RUN/model.pt (dldfd) from 'train fit'")
    x.add_argument("--out", required=True, metavar="DIR")
    x.add_argument("--threshold", type=float, help="decision threshold (default: the source bundle's)")
    x.add_argument("--report", metavar="REPORT.json", help="an eval report to record in the manifest")
    x.add_argument("--id", help="bundle id")
    x.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    x.set_defaults(handler=_export)

    r = tsub.add_parser("protocols", parents=[common_options()],
                        help="dldfd: the paper's protocols (combined, single, cross) with TCR per protocol")
    r.add_argument("--bundle", required=True, metavar="DIR", help="the (ImageNet-initialised) dldfd bundle "
                                                                  "every run starts from")
    r.add_argument("--cache", required=True, metavar="DIR", help="face-crop cache from 'train extract'")
    r.add_argument("--out", required=True, metavar="DIR", help="one run directory per protocol run, table.md/json")
    r.add_argument("--protocols", default="combined,single,cross")
    r.add_argument("--epochs", type=int, default=25)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(handler=_protocols)


def _extract(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import load_bundle
    from engines.scoring import stream_analysis
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector
    from engines.backends import open_runners
    from training.datasets import index_dataset
    from training.extract import extract

    config = setup(args, "train")
    bundle = load_bundle(args.bundle)
    frames = args.frames or bundle.frames
    if bundle.clip_frames and frames % bundle.clip_frames:
        raise UserError(f"--frames {frames} must be a multiple of the bundle's clip length {bundle.clip_frames}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    options = {"quality": args.quality} if args.layout == "faceforensics" else {}
    videos = [v for split in splits for v in index_dataset(args.dataset, split, args.layout, **options)]
    m = config.model
    if bundle.spec.training_cache == CACHE_WINDOW_INPUTS:  # the frozen parts run here, once
        runners, choice = open_runners(bundle, m.backend, m.device, m.threads, precision=m.precision)
        device = choice.device
    else:  # face crops are cached: the per-frame model is what training trains
        runners, device = {}, _device(m.device)
    detector = FaceDetector(DetectorSettings.from_config(config.faces), device=device)
    cache = Path(args.cache)
    counts = extract(videos, cache, bundle, runners, detector, frames,
                     lambda: stream_analysis(bundle, frames, config.window.min_face_fraction, frames=frames),
                     batch=args.batch, crops_dir=cache / "crops" if args.save_crops else None)
    print(json.dumps(counts))
    return 0


def _device(requested: str) -> str:
    from engines.backends import gpu_available, resolve_device

    device = resolve_device(requested)
    return device if device != "cuda" or gpu_available() else "cpu"  # training falls back to the CPU


def _threads(config) -> None:
    import torch

    from engines.backends import thread_count

    torch.set_num_threads(thread_count(config.model.threads))


def _fit(args: argparse.Namespace) -> int:
    from training.cache import cache_kind

    config = setup(args, "train")
    _threads(config)
    if cache_kind(args.cache) == CACHE_FACE_CROPS:
        summary = _fit_frames(args, config)
    else:
        summary = _fit_stylegru(args)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "about")}))
    return 0


def _fit_stylegru(args: argparse.Namespace) -> dict:
    from training.features import load_features
    from training.fit import FitConfig, fit

    head = {k: v for k, v in (("gru_hidden", args.gru_hidden), ("width", args.width)) if v}
    cfg = FitConfig(epochs=args.epochs or 100, batch_size=args.batch_size or 16, lr=args.lr or 1e-4,
                    weight_decay=args.weight_decay, mixup_prob=args.mixup_prob, mixup_alpha=args.mixup_alpha,
                    patience=args.patience, seed=args.seed, head=head)
    return fit(load_features(args.cache, "train"), load_features(args.cache, "val"), cfg, Path(args.out))


def _fit_frames(args: argparse.Namespace, config) -> dict:
    from training.fit_frames import FrameFitConfig, fit_frames
    from training.frames import load_video_crops

    bundle = _frame_model_bundle(args.bundle, args.cache, "fit")
    cfg = FrameFitConfig(epochs=args.epochs or 25, batch_size=args.batch_size or 32, lr=args.lr or 1e-3,
                         flip=not args.no_flip, seed=args.seed)
    family = bundle.spec
    return fit_frames(family, family.trainable(bundle), load_video_crops(args.cache, "train"),
                      load_video_crops(args.cache, "val"), bundle.frame_norm, cfg, Path(args.out),
                      about={"bundle": bundle.id}, device=_device(config.model.device))


def _frame_model_bundle(path: str | None, cache: str, step: str):
    """The bundle whose per-frame model training starts from, for a cache of face crops: one of
    the family that extracted them."""
    from engines.bundles.bundle import load_bundle
    from training.cache import cache_family

    family = cache_family(cache)
    if not path:
        raise UserError(f"this cache holds {family} face crops: 'train {step}' needs --bundle DIR, the {family} bundle "
                        f"whose weights training starts from ('dfwatch engines bundle --family {family}')")
    bundle = load_bundle(path)
    if bundle.family != family:
        raise UserError(f"{path}: a {bundle.family} bundle; the cache holds {family} face crops")
    return bundle


def _eval(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import load_bundle
    from training.cache import cache_kind

    setup(args, "train")
    bundle = load_bundle(args.bundle) if args.bundle else None
    trained = bundle.path(bundle.spec.trained_part) if bundle else Path(args.head)
    threshold = args.threshold if args.threshold is not None else (bundle.threshold if bundle else 0.5)
    history_file = trained.parent / "history.json"
    history = json.loads(history_file.read_text())["history"] if history_file.is_file() else None
    about = {"cache": str(args.cache), "split": args.split, "model": str(trained)}
    if cache_kind(args.cache) == CACHE_FACE_CROPS:
        report = _eval_frames(args, trained, threshold, history, about)
        keys = ("videos", "tcr", "frame_tcr", "accuracy", "roc_auc", "eer")
    else:
        report = _eval_stylegru(args, trained, threshold, history, about)
        keys = ("videos", "accuracy", "precision", "recall", "f1", "roc_auc", "eer", "average_precision")
    print(json.dumps({k: report[k] for k in keys}))
    return 0


def _eval_stylegru(args, head_path: Path, threshold: float, history, about: dict) -> dict:
    from engines.models.checkpoints import load_head
    from engines.models.stylegru import StyleGRUProbability
    from engines.backends import TorchRunner
    from training.evaluate import evaluate
    from training.features import load_features

    runner = TorchRunner("head", StyleGRUProbability(load_head(head_path)))
    return evaluate(runner, load_features(args.cache, args.split), threshold, Path(args.out), history, about)


def _eval_frames(args, model_path: Path, threshold: float, history, about: dict) -> dict:
    from engines.backends import TorchRunner
    from engines.families import get_family
    from training.cache import cache_family
    from training.evaluate import evaluate_frames
    from training.frames import load_video_crops

    family = get_family(cache_family(args.cache))  # the family whose bundle extracted the crops
    model = family.load_trained(model_path)
    return evaluate_frames(TorchRunner("frame", family.probability(model)), load_video_crops(args.cache, args.split),
                           family.trained_normalization(model), threshold, Path(args.out), history, about,
                           family=family)


def _protocols(args: argparse.Namespace) -> int:
    from training.fit_frames import FrameFitConfig
    from training.frames import load_video_crops
    from training.protocols import run_protocols, table_markdown

    config = setup(args, "train")
    _threads(config)
    bundle = _frame_model_bundle(args.bundle, args.cache, "protocols")
    splits = {s: load_video_crops(args.cache, s) for s in ("train", "val", "test")}
    cfg = FrameFitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    rows = run_protocols(bundle, splits, cfg, Path(args.out),
                         tuple(p.strip() for p in args.protocols.split(",") if p.strip()), _device(config.model.device))
    print(table_markdown(rows), end="")
    return 0


def _export(args: argparse.Namespace) -> int:
    from engines.bundles.bundle import derive, describe, load_bundle
    from engines.models.checkpoints import read_checkpoint
    from engines.bundles.export import export_bundle

    setup(args, "train")
    source = load_bundle(args.bundle)
    extra = read_checkpoint(args.head).get("extra", {})
    summary = json.loads(extra.get("summary", "{}"))
    spacing = summary.get("frame_spacing_s") or 0.0
    training, operating = {"fit": summary}, None
    if args.report:
        report = json.loads(Path(args.report).read_text())
        training["eval"] = {k: report[k] for k in ("videos", "accuracy", "tcr", "frame_tcr", "f1", "roc_auc", "eer",
                                                   "average_precision") if k in report} | {"about": report.get("about", {})}
        training["metrics"] = {k: report[k] for k in ("accuracy", "frame_tcr", "roc_auc") if report.get(k) is not None}
        if report.get("operating_points"):  # what each threshold costs on the evaluated split
            operating = {**report["operating_points"], "split": report.get("about", {}).get("split")}
    bundle = derive(source, Path(args.out), Path(args.head), fps=1.0 / spacing if spacing > 0 else None,
                    threshold=args.threshold, training=training, bundle_id=args.id, operating_points=operating)
    if not args.no_onnx:
        bundle = export_bundle(bundle.root)
    print(describe(bundle))
    return 0


COMMANDS = (Command("train", register),)  # training's subcommands (engines/cli lists every package's)
