"""The ICPR 2020 frame detectors with published weights: a detector that works on day one.

Bonettini et al., "Video Face Manipulation Detection Through Ensemble of CNNs" (ICPR 2020;
polimi-ispl/icpr2020dfdc). Two families from one declaration: `icpr-b4` (EfficientNet-B4) and
`icpr-b4att` (EfficientNet-B4 with the attention map, "AutoAtt"), each published trained on FF++
c23 and on DFDC (`dfwatch weights sources`). One part, `frame`: P(fake) = sigmoid(logit) of each
face. The crop is theirs: a square of the face box's larger side (no margin) scaled to 224 px,
RGB, ImageNet normalisation; the box comes from dfwatch's MTCNN instead of their BlazeFace, and
is not smoothed over frames (they crop every frame's own box). A window's score is the mean
P(fake) of its face frames, as the paper scores a video by averaging its frames; it is fake when
the mean reaches the bundle's threshold (0.5 unless the bundle says otherwise). Training
fine-tunes the whole network on cached face crops, as for DLDFD.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from engines.families.base import FrameFamily, Part, SourceOption
from engines.families.schema import ManifestBase, Model
from engines.pipeline.specs import CropSpec, Normalization

IMAGENET_NORM = Normalization(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DEFAULT_FPS = 4.0
LICENCE = ("research use: the weights were trained on FaceForensics++ (c23) or the DFDC training set, whose "
           "terms allow research use only; the authors' code is GPL-3.0 (dfwatch does not use it). Check both "
           "before any other use")


class FrameSection(Model):
    normalization: Normalization
    input: list[int]
    variant: Literal["b4", "b4att"]
    aggregate: Literal["mean"] = "mean"      # a window's score: the mean P(fake) of its face frames


class ICPRManifest(ManifestBase):
    family: Literal["icpr-b4", "icpr-b4att"]
    frame: FrameSection

    def frame_normalization(self) -> Normalization:
        return self.frame.normalization


def crop_policy(select: str = "largest") -> CropSpec:
    """Their crop: the face box's larger side, square, no margin, at 224 px, every frame its own box."""
    return CropSpec(method="box", margin=0.0, size=224, select=select, smoothing=1)


class ICPRFamily(FrameFamily):
    parts = (Part("frame", "frame_model.pth", ("faces",), ("probability",), per="frame", channels_last=True),)
    manifest_type = ICPRManifest
    sources = (SourceOption("--weights", "FILE.pth", "ICPR 2020: a published *_bestval-<sha256>.pth ('dfwatch "
                                                     "weights fetch icpr-b4-ffpp ...') or a model from 'dfwatch "
                                                     "train fit'"),)
    sources_hint = "--weights"
    demo_fps = DEFAULT_FPS
    frame_rule = "mean P(fake) of face frames"

    def __init__(self, variant: str):
        self.variant = variant
        self.name = f"icpr-{variant}"
        self.title = "ICPR 2020 EfficientNet-B4" + (" + attention" if variant == "b4att" else "")
        self.summary = (f"EfficientNet-B4{' with attention' if variant == 'b4att' else ''} per face, published "
                        "FF++/DFDC weights (Bonettini et al., ICPR 2020); window score = mean P(fake)")

    # -- models -------------------------------------------------------------------------------
    def torch_module(self, bundle, part: str):
        from engines.models.checkpoints import load_icpr
        from engines.models.icpr import ICPRProbability

        return ICPRProbability(load_icpr(bundle.path("frame"))).eval()

    # -- windows ------------------------------------------------------------------------------
    def decide_frames(self, probabilities, threshold: float):
        from engines.pipeline.decision import frame_mean

        return frame_mean(probabilities, threshold)

    # -- training on face crops ---------------------------------------------------------------
    def trainable(self, bundle):
        from engines.models.checkpoints import load_icpr

        return load_icpr(bundle.path("frame")).train()

    def load_trained(self, path: Path, trust: bool = False):
        from engines.models.checkpoints import load_icpr

        return load_icpr(path, trust)

    def save_trained(self, path: Path, model, extra: dict | None = None) -> None:
        from engines.models.checkpoints import save_icpr

        save_icpr(path, model, extra)

    def probability(self, model):
        from engines.models.icpr import ICPRProbability

        return ICPRProbability(model)

    def trained_normalization(self, model) -> Normalization:
        return IMAGENET_NORM

    # -- bundles ------------------------------------------------------------------------------
    def describe(self, bundle, crop: str) -> list[str]:
        m: ICPRManifest = bundle.manifest
        src = m.sources
        made = f"weights {src.get('weights')} (sha256 {str(src.get('sha256'))[:12]}...)" if src.get("weights") else ""
        return [f"  window {bundle.frames} frames at {bundle.fps:g} fps, score = mean P(fake) of the face frames "
                f"(fake >= {bundle.threshold:g})",
                f"  {crop}, ImageNet normalisation, {self.title} -> 1 logit" + (f"; {made}" if made else ""),
                *([f"  terms: {src['licence']}"] if src.get("licence") else [])]

    def adopt_trained(self, source, trained: Path, out: Path) -> dict:
        from engines.errors import BundleError
        from engines.models.checkpoints import load_icpr, save_icpr

        net = load_icpr(trained)
        if net.variant != self.variant:
            raise BundleError(f"{trained}: an icpr-{net.variant} network, but the bundle is {self.name}")
        save_icpr(out / self.part("frame").file, net)
        return {}

    def assemble_from_args(self, args, crop: CropSpec, trust: bool):
        from engines.errors import DfwatchError

        if not args.weights:
            raise DfwatchError(f"a {self.name} bundle needs --weights FILE.pth: a published ICPR 2020 file "
                               f"('dfwatch weights fetch {self.name}-ffpp') or a model from 'dfwatch train fit'")
        return assemble(self, args.out, args.weights, frames=args.frames, fps=args.fps, threshold=args.threshold,
                        select=crop.select, bundle_id=args.id, trust=trust)

    def build_demo(self, root: Path, seed: int, trained: Path | None):
        import tempfile

        import torch

        from engines.models.checkpoints import save_icpr
        from engines.models.icpr import ICPRNet

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{self.name}-demo.pth"
            if trained is None:
                with torch.random.fork_rng():
                    torch.manual_seed(seed)
                    save_icpr(path, ICPRNet(self.variant).eval())
            return assemble(self, root, trained or path, fps=self.demo_fps, bundle_id="demo-pending",
                            trained=trained is not None)


def assemble(family: ICPRFamily, out: Path, weights: Path, frames: int = 32, fps: float = DEFAULT_FPS,
             threshold: float = 0.5, select: str = "largest", bundle_id: str | None = None, trust: bool = False,
             trained: bool = True) -> Path:
    """A bundle from an ICPR 2020 weight file (published or fine-tuned): trained unless it is a
    stand-in; the manifest records the file's name, sha256, the training data its name says and
    the licence terms."""
    from engines.models.published import published_source
    from engines.checksums import sha256_file
    from engines.errors import BundleError
    from engines.families.writing import begin_bundle, finish_bundle
    from engines.models.checkpoints import load_icpr, save_icpr

    net = load_icpr(weights, trust)
    if net.variant != family.variant:
        raise BundleError(f"{weights}: an icpr-{net.variant} network; build it with --family icpr-{net.variant}")
    out = begin_bundle(out)
    save_icpr(out / family.part("frame").file, net)
    published = published_source(Path(weights).name)
    sources = {"weights": Path(weights).name, "sha256": sha256_file(Path(weights)), "licence": LICENCE,
               "published": published["name"] if published else None,
               "training_data": published["training_data"] if published else None}
    return finish_bundle(
        family, out, trained=trained, bundle_id=bundle_id,
        window={"frames": frames, "clip_frames": 0, "fps": fps}, threshold=threshold, crop=crop_policy(select),
        frame=FrameSection(normalization=IMAGENET_NORM, input=[3, 224, 224], variant=family.variant),
        sources=sources)


B4 = ICPRFamily("b4")
B4ATT = ICPRFamily("b4att")
