"""StyleGRU: pSp style codes per frame + 3D ResNet-50 content clips, fused by the StyleGRU head.

Parts: `style` (the pSp encoder at the bundle's W+ levels; level 9 by default) runs once per
analysed frame, `content` (pytorchvideo slow_r50) once per 16-frame clip, `head` once per
window: it scores the whole window, P(fake) >= threshold -> fake. Training trains the head on
cached style codes and content features (the encoders stay frozen).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from engines.families.schema import ManifestBase, Model
from engines.families.base import CACHE_WINDOW_INPUTS, Family, Part, SourceOption
from engines.pipeline.specs import CropSpec, Normalization

STYLE_NORM = Normalization(256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))               # pSp: [-1, 1]
CONTENT_NORM = Normalization(112, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225))  # Kinetics (slow_r50)
DEFAULT_FPS = 3.0  # the paper's sampling: 32 frames uniformly over a ~10 s clip; training export records the real spacing
STYLE_DIM, CONTENT_DIM = 512, 2048


class StyleSection(Model):
    levels: tuple[int, ...]              # W+ levels of pSp's style codes the bundle uses
    normalization: Normalization
    start_from_latent_avg: bool
    input: list[int]


class ContentSection(Model):
    normalization: Normalization
    input: list[int]
    feature_dim: int = CONTENT_DIM
    tokens: int | None = None            # content clips per window (set when a trained head is adopted)


class HeadSection(Model):
    config: dict                         # StyleGRUConfig as a dict


class StyleGRUManifest(ManifestBase):
    family: Literal["stylegru"]
    style: StyleSection
    content: ContentSection
    head: HeadSection

    def frame_normalization(self) -> Normalization:
        return self.style.normalization

    def content_normalization(self) -> Normalization:
        return self.content.normalization

    def head_config(self):
        from engines.models.stylegru import StyleGRUConfig

        return StyleGRUConfig.from_dict(self.head.config)


class StyleGRUFamily(Family):
    name = "stylegru"
    title = "StyleGRU"
    summary = "pSp style codes + 3D ResNet-50 clips -> StyleGRU head"
    parts = (
        Part("style", "style_encoder.pt", ("images",), ("codes",), per="frame", channels_last=True),
        Part("content", "content_trunk.pt", ("clips",), ("features",), per="clip", extra_axes={"clips": {2: "frames"}}),
        Part("head", "head.pt", ("style", "content"), ("probability",), per="window"),
    )
    frame_part, content_part, trained_part = "style", "content", "head"
    training_cache = CACHE_WINDOW_INPUTS
    manifest_type = StyleGRUManifest
    sources = (SourceOption("--psp", "PSP.pt", "pSp checkpoint (psp_ffhq_encode.pt)"),
               SourceOption("--r3d", "SLOW.pyth", "pytorchvideo slow_r50 (SLOW_8x8_R50.pyth)"),
               SourceOption("--head", "HEAD.pt", "trained head from 'dfwatch train'; without it the bundle is "
                                                 "marked untrained and every verdict says so"))
    sources_hint = "--psp and --r3d (and --head for a trained bundle)"
    demo_fps = 2.0  # what a 2-core CPU sustains with 32-frame windows

    def input_shapes(self, bundle, part: str) -> dict[str, tuple[int, ...]]:
        m: StyleGRUManifest = bundle.manifest
        if part == "style":
            s = m.style.normalization.size
            return {"images": (3, s, s)}
        if part == "content":
            s = m.content.normalization.size
            return {"clips": (3, m.window.clip_frames, s, s)}
        cfg = m.head_config()
        return {"style": (cfg.frames, cfg.style_levels, cfg.style_dim),
                "content": (cfg.content_tokens, cfg.content_dim)}

    def torch_module(self, bundle, part: str):
        from engines.models.checkpoints import load_head, load_slow_r50, load_style_encoder
        from engines.models.stylegru import StyleGRUProbability

        if part == "style":
            return load_style_encoder(bundle.path("style"))
        if part == "content":
            return load_slow_r50(bundle.path("content"))
        return StyleGRUProbability(load_head(bundle.path("head"))).eval()

    def decide(self, windows, runners: dict, threshold: float):
        """The head scores every window with enough faces in one batched call."""
        import numpy as np

        from engines.pipeline.decision import NO_FACE, window_probability

        scored = [w for w in windows if w.enough_faces]
        votes = {}
        if scored:
            probs = runners["head"].run(np.stack([w.encodings for w in scored]), np.stack([w.content for w in scored]))
            votes = {id(w): window_probability(float(p), threshold) for w, p in zip(scored, probs)}
        return [votes.get(id(w), NO_FACE) for w in windows]

    def describe(self, bundle, crop: str) -> list[str]:
        m: StyleGRUManifest = bundle.manifest
        head = m.head_config()
        return [f"  window {bundle.frames} frames at {bundle.fps:g} fps, content clips of {bundle.clip_frames}, "
                f"threshold {bundle.threshold:g}",
                f"  style levels {list(m.style.levels)}, {crop}, head GRU {head.gru_layers}x{head.gru_hidden}"
                f"{' bidirectional' if head.bidirectional else ''}, width {head.width}"]

    def adopt_trained(self, source, trained: Path, out: Path) -> dict:
        from engines.models.checkpoints import load_head, save_head

        m: StyleGRUManifest = source.manifest
        head = load_head(trained)
        check_head_fits(head.cfg, len(m.style.levels), head.cfg.frames, source.clip_frames)
        save_head(out / self.part("head").file, head)
        return {"window": {**m.window.model_dump(mode="json"), "frames": head.cfg.frames},
                "content": {**m.content.model_dump(mode="json"), "tokens": head.cfg.frames // source.clip_frames},
                "head": {"config": head.cfg.to_dict()}}

    def assemble_from_args(self, args, crop: CropSpec, trust: bool):
        from engines.errors import DfwatchError

        if not (args.psp and args.r3d):
            raise DfwatchError("a stylegru bundle needs --psp PSP.pt and --r3d SLOW.pyth")
        if args.frames % args.clip_frames:
            raise DfwatchError(f"--frames {args.frames} must be a multiple of --clip-frames {args.clip_frames}")
        return assemble(args.out, args.psp, args.r3d, args.head, levels=args.levels, frames=args.frames,
                        clip_frames=args.clip_frames, fps=args.fps, threshold=args.threshold, crop=crop,
                        bundle_id=args.id, trust=trust, style_size=args.style_size)

    def build_demo(self, root: Path, seed: int, trained: Path | None):
        import tempfile

        import torch

        from engines.models.demo_weights import psp_checkpoint, slow_r50_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            torch.save(psp_checkpoint(seed), Path(tmp) / "psp_demo.pt")
            torch.save(slow_r50_checkpoint(seed), Path(tmp) / "slow_r50_demo.pyth")
            return assemble(root, Path(tmp) / "psp_demo.pt", Path(tmp) / "slow_r50_demo.pyth", head=trained,
                            fps=self.demo_fps, bundle_id="demo-pending")


def check_head_fits(cfg, levels: int, frames: int, clip_frames: int) -> None:
    from engines.errors import BundleError

    expected = (frames, levels, frames // clip_frames)
    found = (cfg.frames, cfg.style_levels, cfg.content_tokens)
    if expected != found:
        raise BundleError(f"the head expects (frames, style levels, clips) = {found} but the bundle has "
                          f"{expected}; pass matching --levels/--frames or a matching head")


def new_head(cfg, seed: int = 0):
    """A freshly initialised head (deterministic for a seed): bundles without a trained head."""
    import torch

    from engines.models.stylegru import StyleGRUHead

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return StyleGRUHead(cfg).eval()


def assemble(out: Path, psp: Path, r3d: Path, head: Path | None = None, levels: tuple[int, ...] = (9,),
             frames: int = 32, clip_frames: int = 16, fps: float = DEFAULT_FPS, threshold: float = 0.5,
             crop: CropSpec = CropSpec(), bundle_id: str | None = None, training: dict | None = None,
             head_config=None, trust: bool = False, style_size: int = 256, content_size: int = 112):
    """Writes a bundle from official checkpoints (and a trained head, if any); returns its folder.

    `style_size`/`content_size` other than the published 256/112 are for fast tests only: the
    networks accept them, but the published weights were trained at 256/112."""
    import torch

    from engines.checksums import sha256_file
    from engines.families.writing import begin_bundle, finish_bundle
    from engines.models.checkpoints import load_head, load_psp_encoder, load_slow_r50, save_head, save_style_encoder
    from engines.models.stylegru import StyleGRUConfig

    out = begin_bundle(out)
    family = FAMILY
    encoder = load_psp_encoder(psp, levels, trust=trust)
    save_style_encoder(out / family.part("style").file, encoder, {"file": Path(psp).name, "sha256": sha256_file(Path(psp))})
    trunk = load_slow_r50(r3d, trust=trust)
    torch.save({"model_state": trunk.state_dict()}, out / family.part("content").file)
    if head is not None:
        head_model = load_head(head, trust=trust)
    else:
        cfg = head_config or StyleGRUConfig(frames=frames, style_levels=len(encoder.levels),
                                            content_tokens=frames // clip_frames)
        head_model = new_head(cfg)
    check_head_fits(head_model.cfg, len(encoder.levels), frames, clip_frames)
    save_head(out / family.part("head").file, head_model)
    return finish_bundle(
        family, out, trained=head is not None, bundle_id=bundle_id,
        window={"frames": frames, "clip_frames": clip_frames, "fps": fps}, threshold=threshold,
        crop=CropSpec(**{**crop.to_dict(), "size": style_size}), training=training,
        style=StyleSection(levels=tuple(encoder.levels), normalization=STYLE_NORM.at(style_size),
                           start_from_latent_avg=encoder.start_from_latent_avg, input=[3, style_size, style_size]),
        content=ContentSection(normalization=CONTENT_NORM.at(content_size),
                               input=[3, clip_frames, content_size, content_size]),
        head=HeadSection(config=head_model.cfg.to_dict()),
        sources={"psp": Path(psp).name, "r3d": Path(r3d).name, "head": Path(head).name if head else None})


FAMILY = StyleGRUFamily()
