"""DLDFD: a frame-level 2D ResNet-50 detector whose per-frame labels are majority-voted per window.

One part, `frame`: P(fake) of each face crop (ImageNet normalisation, the trunk's pretraining).
The paper's window rule: every frame with a face gets its own label (P >= threshold); the window
is fake when at least half of them vote fake (a tie alerts); the reported score is their mean
P(fake). Training trains the whole per-frame model on cached face crops.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from engines.families.schema import ManifestBase, Model
from engines.families.base import FrameFamily, Part, SourceOption
from engines.pipeline.specs import CropSpec, Normalization

IMAGENET_NORM = Normalization(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision ResNet-50
DEFAULT_FPS = 3.0


class FrameSection(Model):
    normalization: Normalization
    input: list[int]
    config: dict                         # DLDFDConfig as a dict
    vote: Literal["majority"] = "majority"


class DLDFDManifest(ManifestBase):
    family: Literal["dldfd"]
    frame: FrameSection

    def frame_normalization(self) -> Normalization:
        return self.frame.normalization

    def network_config(self):
        from engines.models.dldfd import DLDFDConfig

        return DLDFDConfig.from_dict(self.frame.config)


class DLDFDFamily(FrameFamily):
    name = "dldfd"
    title = "DLDFD"
    summary = "frame-level 2D detector; majority vote per window"
    parts = (Part("frame", "frame_model.pt", ("faces",), ("probability",), per="frame", channels_last=True),)
    manifest_type = DLDFDManifest
    sources = (SourceOption("--resnet50", "RESNET50.pth", "torchvision ResNet-50 ImageNet weights "
                                                          "(an untrained bundle to start 'dfwatch train' from)"),
               SourceOption("--model", "MODEL.pt", "a trained model from 'dfwatch train fit'"))
    sources_hint = "--resnet50 or --model"
    frame_rule = "majority vote of face frames"
    demo_fps = 6.0  # the frame-level detector is 7-9x cheaper per frame than StyleGRU (docs/BENCHMARKS.md)

    def torch_module(self, bundle, part: str):
        from engines.models.checkpoints import load_dldfd
        from engines.models.dldfd import DLDFDProbability

        return DLDFDProbability(load_dldfd(bundle.path("frame"))).eval()

    def decide_frames(self, probabilities, threshold: float):
        from engines.pipeline.decision import frame_vote

        return frame_vote(probabilities, threshold)

    # -- training on face crops ---------------------------------------------------------------
    def trainable(self, bundle):
        from engines.models.checkpoints import load_dldfd

        return load_dldfd(bundle.path(self.trained_part)).train()

    def load_trained(self, path: Path, trust: bool = False):
        from engines.models.checkpoints import load_dldfd

        return load_dldfd(path, trust)

    def save_trained(self, path: Path, model, extra: dict | None = None) -> None:
        from engines.models.checkpoints import save_dldfd

        save_dldfd(path, model, extra)

    def probability(self, model):
        from engines.models.dldfd import DLDFDProbability

        return DLDFDProbability(model)

    def trained_normalization(self, model) -> Normalization:
        return IMAGENET_NORM.at(model.cfg.input_size)

    def describe(self, bundle, crop: str) -> list[str]:
        cfg = bundle.manifest.network_config()
        return [f"  window {bundle.frames} frames at {bundle.fps:g} fps, majority vote of per-frame labels "
                f"(P(fake) >= {bundle.threshold:g})",
                f"  {crop}, ImageNet normalisation, stem {cfg.branches}x3x3x{cfg.filters} -> 1x1 -> ResNet-50 -> fc"]

    def adopt_trained(self, source, trained: Path, out: Path) -> dict:
        from engines.models.checkpoints import load_dldfd, save_dldfd
        from engines.errors import BundleError

        model = load_dldfd(trained)
        expected = source.manifest.network_config()
        if model.cfg != expected:
            raise BundleError(f"{trained}: DLDFD config {model.cfg} differs from the bundle's {expected}")
        save_dldfd(out / self.part("frame").file, model)
        return {}

    def assemble_from_args(self, args, crop: CropSpec, trust: bool):
        from engines.errors import DfwatchError

        if bool(args.resnet50) == bool(args.model):
            raise DfwatchError("a dldfd bundle needs exactly one of --resnet50 RESNET50.pth (ImageNet weights: "
                               "untrained) or --model MODEL.pt (trained by 'dfwatch train fit')")
        return assemble(args.out, resnet50=args.resnet50, model=args.model, frames=args.frames, fps=args.fps,
                        threshold=args.threshold, crop=crop, bundle_id=args.id, trust=trust)

    def build_demo(self, root: Path, seed: int, trained: Path | None):
        import tempfile

        import torch

        from engines.models.demo_weights import resnet50_imagenet_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            torch.save(resnet50_imagenet_checkpoint(seed), Path(tmp) / "resnet50_demo.pth")
            return assemble(root, resnet50=Path(tmp) / "resnet50_demo.pth" if trained is None else None,
                            model=trained, fps=self.demo_fps, seed=seed, bundle_id="demo-pending")


def assemble(out: Path, resnet50: Path | None = None, model: Path | None = None, frames: int = 32,
             fps: float = DEFAULT_FPS, threshold: float = 0.5, crop: CropSpec = CropSpec(),
             bundle_id: str | None = None, training: dict | None = None, trust: bool = False,
             input_size: int = 224, seed: int = 0):
    """Writes a DLDFD bundle: from a torchvision ResNet-50 ImageNet file (stem and fc freshly
    initialised: untrained) or from a trained DLDFD file ('dfwatch train fit'); returns its folder. `input_size`
    other than the paper's 224 is for fast tests."""
    from engines.errors import BundleError
    from engines.families.writing import begin_bundle, finish_bundle
    from engines.models.checkpoints import dldfd_from_imagenet, load_dldfd, save_dldfd
    from engines.models.dldfd import DLDFDConfig

    if (resnet50 is None) == (model is None):
        raise BundleError("a DLDFD bundle needs exactly one of: an ImageNet ResNet-50 file (untrained) "
                          "or a trained DLDFD model file")
    out = begin_bundle(out)
    net = load_dldfd(model, trust) if model else \
        dldfd_from_imagenet(resnet50, DLDFDConfig(input_size=input_size), seed, trust)
    size = net.cfg.input_size
    save_dldfd(out / FAMILY.part("frame").file, net)
    return finish_bundle(
        FAMILY, out, trained=model is not None, bundle_id=bundle_id,
        window={"frames": frames, "clip_frames": 0, "fps": fps}, threshold=threshold,
        crop=CropSpec(**{**crop.to_dict(), "size": size}), training=training,
        frame=FrameSection(normalization=IMAGENET_NORM.at(size), input=[3, size, size], config=net.cfg.to_dict()),
        sources={"resnet50": Path(resnet50).name if resnet50 else None, "model": Path(model).name if model else None})


FAMILY = DLDFDFamily()
