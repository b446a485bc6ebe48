"""Model bundles: a directory with `manifest.json` and the weight files the daemon loads.

Two model families (`manifest.family`): `stylegru` (parts style, content, head: pSp codes and
3D ResNet-50 clips fused by the StyleGRU head) and `dldfd` (one part, frame: a per-frame 2D
detector whose labels are majority-voted per window).

The manifest carries everything a model needs besides its weights — configs, input sizes,
normalisation constants, the face-crop method, window length, analysis frame rate, style levels,
decision threshold, training provenance — plus the sha256 of every file, so the daemon sees the
same pixels the model was trained on and refuses a bundle that was changed behind its back.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engines import __version__
from engines.bundles.checkpoints import (CheckpointError, check_state_dict, dldfd_from_imagenet, expected_shapes,
                                 load_dldfd, load_head, load_psp_encoder, load_slow_r50, read_checkpoint,
                                 save_dldfd, save_head)
from engines.bundles.manifest import (FAMILY_PARTS, FORMAT, FORMAT_VERSION, MANIFEST, BundleError, read_manifest,
                              sha256_file, verify_file)
from engines.models.dldfd import DLDFD, DLDFDConfig
from engines.models.psp import PSPStyleEncoder
from engines.models.r3d import SlowR50
from engines.models.stylegru import StyleGRUConfig, StyleGRUHead
from engines.pipeline.preprocess import CONTENT_NORM, IMAGENET_NORM, STYLE_NORM, CropSpec, Normalization

STYLE_FILE, CONTENT_FILE, HEAD_FILE = "style_encoder.pt", "content_trunk.pt", "head.pt"
FRAME_FILE = "frame_model.pt"
FILES = {"style": STYLE_FILE, "content": CONTENT_FILE, "head": HEAD_FILE, "frame": FRAME_FILE}
FRAME_PART = {"stylegru": "style", "dldfd": "frame"}      # the part that runs once per frame
TRAINED_PART = {"stylegru": "head", "dldfd": "frame"}     # the part 'dfwatch train' produces
STYLE_ENCODER_FORMAT = "dfwatch-style-encoder"
DEFAULT_FPS = 3.0  # seed method: 32 frames uniformly over a ~10 s clip; training export records the real spacing


def file_entry(root: Path, relpath: str) -> dict:
    path = root / relpath
    return {"path": relpath, "sha256": sha256_file(path), "bytes": path.stat().st_size}


@dataclass
class Bundle:
    """A validated bundle on disk. `manifest` is the parsed manifest.json."""
    root: Path
    manifest: dict

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def parts(self) -> tuple[str, ...]:
        return FAMILY_PARTS[self.family]

    @property
    def frame_part(self) -> str:
        return FRAME_PART[self.family]

    @property
    def trained(self) -> bool:
        return bool(self.manifest["trained"])

    @property
    def frames(self) -> int:
        return int(self.manifest["window"]["frames"])

    @property
    def clip_frames(self) -> int:
        """Frames per content clip; 0 for a family without content clips."""
        return int(self.manifest["window"].get("clip_frames", 0))

    @property
    def fps(self) -> float:
        return float(self.manifest["window"]["fps"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(self.manifest["style"]["levels"])

    @property
    def crop(self) -> CropSpec:
        return CropSpec(**self.manifest["crop"])

    @property
    def style_norm(self) -> Normalization:
        return _norm(self.manifest["style"]["normalization"])

    @property
    def frame_norm(self) -> Normalization:
        """Input normalisation of the per-frame model."""
        return _norm(self.manifest[self.frame_part]["normalization"])

    @property
    def content_norm(self) -> Normalization | None:
        return _norm(self.manifest["content"]["normalization"]) if "content" in self.manifest else None

    @property
    def dldfd_config(self) -> DLDFDConfig:
        return DLDFDConfig.from_dict(self.manifest["frame"]["config"])

    @property
    def head_config(self) -> StyleGRUConfig:
        return StyleGRUConfig.from_dict(self.manifest["head"]["config"])

    def path(self, part: str) -> Path:
        return self.root / self.manifest["files"][part]["path"]

    def onnx_path(self, part: str) -> Path | None:
        entry = self.manifest.get("onnx", {}).get(part)
        return self.root / entry["path"] if entry else None

    # -- the torch modules -------------------------------------------------------------------
    def style_encoder(self) -> PSPStyleEncoder:
        return load_style_encoder(self.path("style"))

    def content_trunk(self) -> SlowR50:
        return load_slow_r50(self.path("content"))

    def head(self) -> StyleGRUHead:
        return load_head(self.path("head"))

    def frame_model(self) -> DLDFD:
        return load_dldfd(self.path("frame"))


def _norm(d: dict) -> Normalization:
    return Normalization(int(d["size"]), tuple(d["mean"]), tuple(d["std"]))


# ---- the level-pruned style encoder file ---------------------------------------------------

def save_style_encoder(path: Path, model: PSPStyleEncoder, source: dict) -> None:
    """Only the levels the bundle uses (a level-9 encoder is 46 M of pSp's 267 M parameters)."""
    torch.save({"format": STYLE_ENCODER_FORMAT, "version": 1, "levels": list(model.levels),
                "start_from_latent_avg": model.start_from_latent_avg, "source": source,
                "state_dict": model.state_dict()}, path)


def load_style_encoder(path: Path) -> PSPStyleEncoder:
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != STYLE_ENCODER_FORMAT:
        raise CheckpointError(f"{path}: not a dfwatch style-encoder file; bundles are made by "
                              "'dfwatch engines bundle' or 'dfwatch train export'")
    levels, avg = tuple(ckpt["levels"]), bool(ckpt["start_from_latent_avg"])
    check_state_dict(ckpt["state_dict"], expected_shapes(lambda: PSPStyleEncoder(levels, avg)), "style encoder", path)
    model = PSPStyleEncoder(levels, avg)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


# ---- assembling ----------------------------------------------------------------------------

def new_head(cfg: StyleGRUConfig, seed: int = 0) -> StyleGRUHead:
    """A freshly initialised head (deterministic for a seed): bundles without a trained head."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return StyleGRUHead(cfg).eval()


def assemble(out: Path, psp: Path, r3d: Path, head: Path | None = None, levels: tuple[int, ...] = (9,),
             frames: int = 32, clip_frames: int = 16, fps: float = DEFAULT_FPS, threshold: float = 0.5,
             crop: CropSpec = CropSpec(), bundle_id: str | None = None, training: dict | None = None,
             head_config: StyleGRUConfig | None = None, trust: bool = False, style_size: int = 256,
             content_size: int = 112) -> Bundle:
    """Writes a bundle from official checkpoints (and a trained head, if any) and validates it.

    `style_size`/`content_size` other than the published 256/112 are for fast tests only: the
    networks accept them, but the published weights were trained at 256/112."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()  # a half-written bundle must never validate
    crop = CropSpec(**{**crop.to_dict(), "size": style_size})
    style_norm = Normalization(style_size, STYLE_NORM.mean, STYLE_NORM.std)
    content_norm = Normalization(content_size, CONTENT_NORM.mean, CONTENT_NORM.std)
    encoder = load_psp_encoder(psp, levels, trust=trust)
    save_style_encoder(out / STYLE_FILE, encoder, {"file": Path(psp).name, "sha256": sha256_file(Path(psp))})
    trunk = load_slow_r50(r3d, trust=trust)
    torch.save({"model_state": trunk.state_dict()}, out / CONTENT_FILE)
    if head is not None:
        head_model = load_head(head, trust=trust)
    else:
        cfg = head_config or StyleGRUConfig(frames=frames, style_levels=len(encoder.levels),
                                            content_tokens=frames // clip_frames)
        head_model = new_head(cfg)
    _check_head_fits(head_model.cfg, len(encoder.levels), frames, clip_frames)
    save_head(out / HEAD_FILE, head_model)
    files = {part: file_entry(out, FILES[part]) for part in FAMILY_PARTS["stylegru"]}
    trained = head is not None
    manifest = base_manifest(
        "stylegru", bundle_id or f"stylegru-{'trained' if trained else 'untrained'}-{files['head']['sha256'][:8]}",
        trained, {"frames": frames, "clip_frames": clip_frames, "fps": fps}, threshold, crop, training, files)
    manifest.update({
        "style": {"levels": list(encoder.levels), "normalization": style_norm.to_dict(),
                  "start_from_latent_avg": encoder.start_from_latent_avg, "input": [3, style_size, style_size]},
        "content": {"normalization": content_norm.to_dict(), "input": [3, clip_frames, content_size, content_size],
                    "feature_dim": 2048},
        "head": {"config": head_model.cfg.to_dict()},
        "sources": {"psp": Path(psp).name, "r3d": Path(r3d).name, "head": Path(head).name if head else None},
    })
    write_manifest(out, manifest)
    return load_bundle(out)


def base_manifest(family: str, bundle_id: str, trained: bool, window: dict, threshold: float, crop: CropSpec,
                  training: dict | None, files: dict) -> dict:
    """The manifest fields every family has."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "id": bundle_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": __version__,
            "family": family, "trained": trained, "window": window, "threshold": threshold,
            "crop": crop.to_dict(), "training": training or None, "files": files}


def dldfd_normalization(size: int) -> Normalization:
    """DLDFD's input: ImageNet mean/std (its trunk's pretraining) at the model's input size."""
    return Normalization(size, IMAGENET_NORM.mean, IMAGENET_NORM.std)


def assemble_dldfd(out: Path, resnet50: Path | None = None, model: Path | None = None, frames: int = 32,
                   fps: float = DEFAULT_FPS, threshold: float = 0.5, crop: CropSpec = CropSpec(),
                   bundle_id: str | None = None, training: dict | None = None, trust: bool = False,
                   input_size: int = 224, seed: int = 0) -> Bundle:
    """Writes a DLDFD bundle: from a torchvision ResNet-50 ImageNet file (stem and fc freshly
    initialised: untrained) or from a trained DLDFD file ('dfwatch train fit'). `input_size`
    other than the paper's 224 is for fast tests."""
    if (resnet50 is None) == (model is None):
        raise BundleError("a DLDFD bundle needs exactly one of: an ImageNet ResNet-50 file (untrained) "
                          "or a trained DLDFD model file")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a half-written bundle must never validate
    net = load_dldfd(model, trust) if model else \
        dldfd_from_imagenet(resnet50, DLDFDConfig(input_size=input_size), seed, trust)
    size = net.cfg.input_size
    save_dldfd(out / FRAME_FILE, net)
    files = {"frame": file_entry(out, FRAME_FILE)}
    trained = model is not None
    manifest = base_manifest(
        "dldfd", bundle_id or f"dldfd-{'trained' if trained else 'untrained'}-{files['frame']['sha256'][:8]}",
        trained, {"frames": frames, "clip_frames": 0, "fps": fps}, threshold,
        CropSpec(**{**crop.to_dict(), "size": size}), training, files)
    manifest.update({
        "frame": {"normalization": dldfd_normalization(size).to_dict(),
                  "input": [3, size, size], "config": net.cfg.to_dict(), "vote": "majority"},
        "sources": {"resnet50": Path(resnet50).name if resnet50 else None, "model": Path(model).name if model else None},
    })
    write_manifest(out, manifest)
    return load_bundle(out)


def derive(source: Bundle, out: Path, trained: Path, fps: float | None = None, threshold: float | None = None,
           training: dict | None = None, bundle_id: str | None = None) -> Bundle:
    """A new bundle with `source`'s preprocessing and untouched parts plus a trained part — the
    head (stylegru) or the whole per-frame model (dldfd): what `dfwatch train export` writes."""
    import shutil

    out = Path(out)
    if out.resolve() == source.root.resolve():
        raise BundleError(f"{out}: export into a new directory, not the source bundle")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    m = dict(source.manifest)
    m.pop("onnx", None)
    window = {**source.manifest["window"], "fps": fps if fps else source.fps}
    trained_part = TRAINED_PART[source.family]
    if source.family == "dldfd":
        model = load_dldfd(trained)
        if model.cfg != source.dldfd_config:
            raise BundleError(f"{trained}: DLDFD config {model.cfg} differs from the bundle's {source.dldfd_config}")
        save_dldfd(out / FRAME_FILE, model)
    else:
        head_model = load_head(trained)
        _check_head_fits(head_model.cfg, len(source.levels), head_model.cfg.frames, source.clip_frames)
        save_head(out / HEAD_FILE, head_model)
        window["frames"] = head_model.cfg.frames
        m["content"] = {**source.manifest["content"], "tokens": head_model.cfg.frames // source.clip_frames}
        m["head"] = {"config": head_model.cfg.to_dict()}
    for part in source.parts:
        if part != trained_part:
            shutil.copyfile(source.path(part), out / FILES[part])
    files = {part: file_entry(out, FILES[part]) for part in source.parts}
    m.update({
        "id": bundle_id or f"{source.family}-{files[trained_part]['sha256'][:8]}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": __version__,
        "trained": True, "threshold": source.threshold if threshold is None else threshold, "window": window,
        "training": training, "files": files,
        "sources": {**source.manifest.get("sources", {}), trained_part: Path(trained).name,
                    "derived_from": source.id},
    })
    write_manifest(out, m)
    return load_bundle(out)


def _check_head_fits(cfg: StyleGRUConfig, levels: int, frames: int, clip_frames: int) -> None:
    expected = (frames, levels, frames // clip_frames)
    found = (cfg.frames, cfg.style_levels, cfg.content_tokens)
    if expected != found:
        raise BundleError(f"the head expects (frames, style levels, clips) = {found} but the bundle has "
                          f"{expected}; pass matching --levels/--frames or a matching head")


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(root / MANIFEST)


# ---- loading and validation ----------------------------------------------------------------

def load_bundle(root: str | Path, verify: bool = True, check_onnx: bool = True) -> Bundle:
    """Reads and validates a bundle: format, version, required fields, files and checksums
    (ONNX files too unless `check_onnx` is false, as when they are about to be re-exported)."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        entries = {p: manifest["files"][p] for p in FAMILY_PARTS[manifest["family"]]}
        if check_onnx:
            entries.update({f"ONNX {p}": e for p, e in manifest.get("onnx", {}).items()})
        for part, entry in entries.items():
            verify_file(root, part, entry)
    return Bundle(root, manifest)


def describe(bundle: Bundle) -> str:
    """Human-readable summary for `dfwatch engines info`."""
    m = bundle.manifest
    lines = [
        f"bundle {bundle.id}  ({bundle.root})",
        f"  family {m['family']}, {'TRAINED' if bundle.trained else 'UNTRAINED: scores mean nothing'}, "
        f"created {m['created_at']} by dfwatch {m['code_version']}",
    ]
    crop = f"crop {m['crop']['method']} (margin {m['crop']['margin']:g}, {m['crop']['size']} px)"
    if bundle.family == "dldfd":
        cfg = bundle.dldfd_config
        lines += [f"  window {bundle.frames} frames at {bundle.fps:g} fps, majority vote of per-frame labels "
                  f"(P(fake) >= {bundle.threshold:g})",
                  f"  {crop}, ImageNet normalisation, stem {cfg.branches}x3x3x{cfg.filters} -> 1x1 -> ResNet-50 -> fc"]
    else:
        head = bundle.head_config
        lines += [f"  window {bundle.frames} frames at {bundle.fps:g} fps, content clips of {bundle.clip_frames}, "
                  f"threshold {bundle.threshold:g}",
                  f"  style levels {list(bundle.levels)}, {crop}, head GRU {head.gru_layers}x{head.gru_hidden}"
                  f"{' bidirectional' if head.bidirectional else ''}, width {head.width}"]
    for part, entry in {**m["files"], **{f"onnx:{k}": v for k, v in m.get("onnx", {}).items()}}.items():
        lines.append(f"  {part:<14} {entry['path']:<28} {entry['bytes'] / 1e6:8.1f} MB  sha256 {entry['sha256'][:16]}")
    if m.get("training"):
        metrics = m["training"].get("metrics", {})
        lines.append("  training: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in metrics.items()))
    return "\n".join(lines)
