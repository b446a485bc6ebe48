"""MesoNet: a real, trained detector in the box (the published weights ship with dfwatch).

Afchar et al., "MesoNet: a Compact Facial Video Forgery Detection Network" (WIFS 2018;
github.com/DariusAf/MesoNet, Apache-2.0). Two architectures (Meso4, MesoInception4), each
published trained on the authors' Deepfake set (DF) and on Face2Face (F2F): four Keras HDF5 files,
about 28k parameters and 0.1 GFLOP per face, shipped in `engines/models/weights/mesonet/` with
their LICENSE and NOTICE. One part, `frame`: P(fake) of each face = 1 - the published sigmoid,
which is P(real). Input: their crop (nose-centred, eye-mouth axis vertical, side 1.3 x 2.2 x the
larger face distance; `CropSpec(method="meso")` on MTCNN's landmarks) at 256 px, RGB in [0, 1],
every frame its own crop. A window's score is the mean P(fake) of its face frames, as the paper
aggregates a video's images. The threshold is the bundle's, chosen from what `dfwatch eval`
measured (docs/ACCURACY.md), not 0.5: the published networks call much real footage fake.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from engines.families.base import FrameFamily, Part, SourceOption
from engines.families.schema import ManifestBase, Model
from engines.pipeline.specs import CropSpec, Normalization

UNIT_NORM = Normalization(256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))   # RGB / 255: Keras's rescale=1./255
DEFAULT_FPS = 4.0
SHIPPED = Path(__file__).resolve().parent.parent / "models" / "weights" / "mesonet"
DEFAULT_WEIGHTS = "MesoInception_F2F.h5"   # the best of the four measured by `dfwatch eval` (docs/ACCURACY.md)
DEFAULT_THRESHOLD = 0.5                     # a fine-tuned network's, until it is measured
# each published file's threshold: the lowest that called none of the 10 real files of the
# measurement fake (docs/ACCURACY.md: a dozen files, in-sample; calibrate on your own cameras)
MEASURED_THRESHOLDS = {"Meso4_DF.h5": 0.77, "Meso4_F2F.h5": 0.42, "MesoInception_DF.h5": 0.80,
                       "MesoInception_F2F.h5": 0.06}
LICENCE = ("Apache-2.0 (the authors' weights and code, github.com/DariusAf/MesoNet; LICENSE and NOTICE travel "
           "with the files); trained on the authors' Deepfake and Face2Face sets")


class FrameSection(Model):
    normalization: Normalization
    input: list[int]
    architecture: Literal["meso4", "mesoinception4"]
    training_set: str                       # DF, F2F (the published files), or what fine-tuning used
    aggregate: Literal["mean"] = "mean"     # a window's score: the mean P(fake) of its face frames


class MesoNetManifest(ManifestBase):
    family: Literal["mesonet"]
    frame: FrameSection

    def frame_normalization(self) -> Normalization:
        return self.frame.normalization


def crop_policy(select: str = "largest") -> CropSpec:
    """Their crop at 256 px, every frame its own landmarks (no smoothing, as their pipeline)."""
    return CropSpec(method="meso", margin=0.0, size=256, select=select, smoothing=1)


def training_set_of(file_name: str) -> str | None:
    """DF or F2F for a published file's name (Meso4_DF.h5, ...), else None."""
    stem = Path(file_name).stem
    return stem.rsplit("_", 1)[-1] if stem.rsplit("_", 1)[-1] in ("DF", "F2F") else None


class MesoNetFamily(FrameFamily):
    name = "mesonet"
    title = "MesoNet"
    summary = ("Meso4 / MesoInception4 per face, published weights shipped with dfwatch (Afchar et al., WIFS "
               "2018); window score = mean P(fake)")
    parts = (Part("frame", "frame_model.pt", ("faces",), ("probability",), per="frame", channels_last=True),)
    manifest_type = MesoNetManifest
    sources = (SourceOption("--weights", "FILE", "the published weight file: ICPR 2020 *_bestval-<sha256>.pth "
                                                 "('dfwatch weights fetch icpr-b4-ffpp ...'), MesoNet *.h5 (default "
                                                 f"for mesonet: the shipped {DEFAULT_WEIGHTS}; a shipped file by its name), or a model from "
                                                 "'dfwatch train fit'"),)
    sources_hint = "--weights (optional: the shipped MesoInception_F2F.h5; a shipped file by its name, e.g. Meso4_DF.h5)"
    demo_fps = DEFAULT_FPS
    demo_is_real = True      # `dfwatch demo` serves the shipped, trained weights, not stand-ins
    default_threshold = DEFAULT_THRESHOLD
    frame_rule = "mean P(fake) of face frames"

    # -- models -------------------------------------------------------------------------------
    def torch_module(self, bundle, part: str):
        from engines.models.checkpoints import load_mesonet
        from engines.models.mesonet import MesoProbability

        return MesoProbability(load_mesonet(bundle.path("frame"))).eval()

    # -- windows ------------------------------------------------------------------------------
    def decide_frames(self, probabilities, threshold: float):
        from engines.pipeline.decision import frame_mean

        return frame_mean(probabilities, threshold)

    # -- training on face crops ---------------------------------------------------------------
    def trainable(self, bundle):
        return self.load_trained(bundle.path("frame")).train()

    def load_trained(self, path: Path, trust: bool = False):
        """The network as training sees it: (B,) logits of P(fake) (the published one gives P(real)'s)."""
        from engines.models.checkpoints import load_mesonet
        from engines.models.mesonet import FakeLogit

        return FakeLogit(load_mesonet(path, trust))

    def save_trained(self, path: Path, model, extra: dict | None = None) -> None:
        from engines.models.checkpoints import save_mesonet

        save_mesonet(path, model.net, extra)   # the published orientation: P(real)'s logit

    def probability(self, model):
        from engines.models.mesonet import MesoProbability

        return MesoProbability(model.net)

    def trained_normalization(self, model) -> Normalization:
        return UNIT_NORM

    # -- bundles ------------------------------------------------------------------------------
    def describe(self, bundle, crop: str) -> list[str]:
        m: MesoNetManifest = bundle.manifest
        src = m.sources
        arch = "Meso4" if m.frame.architecture == "meso4" else "MesoInception4"
        made = f"weights {src.get('weights')} (sha256 {str(src.get('sha256'))[:12]}...)" if src.get("weights") else ""
        return [f"  window {bundle.frames} frames at {bundle.fps:g} fps, score = mean P(fake) of the face frames "
                f"(fake >= {bundle.threshold:g})",
                f"  {crop}, RGB / 255, {arch} "
                f"{'fine-tuned' if m.frame.training_set == 'fine-tuned' else 'trained on ' + m.frame.training_set}"
                " -> P(fake) = 1 - P(real)"
                + (f"; {made}" if made else ""),
                *([f"  terms: {src['licence']}"] if src.get("licence") else [])]

    def adopt_trained(self, source, trained: Path, out: Path) -> dict:
        from engines.errors import BundleError
        from engines.models.checkpoints import load_mesonet, save_mesonet

        net = load_mesonet(trained)
        if net.architecture != source.manifest.frame.architecture:
            raise BundleError(f"{trained}: a {net.architecture} network, but the bundle is "
                              f"{source.manifest.frame.architecture}")
        save_mesonet(out / self.part("frame").file, net)
        return {"frame": {**source.manifest.frame.model_dump(mode="json"), "training_set": "fine-tuned"}}

    def threshold_for(self, args) -> float:
        return measured_threshold(weights_path(args.weights))

    def assemble_from_args(self, args, crop: CropSpec, trust: bool):
        return assemble(args.out, weights_path(args.weights), frames=args.frames, fps=args.fps,
                        threshold=args.threshold, select=crop.select, bundle_id=args.id, trust=trust)

    def build_demo(self, root: Path, seed: int, trained: Path | None):
        """The shipped, published weights (trained): the demo is a real detector."""
        weights = trained or SHIPPED / DEFAULT_WEIGHTS
        return assemble(root, weights, fps=self.demo_fps,
                        threshold=measured_threshold(Path(weights)))


def measured_threshold(weights: Path) -> float:
    """A published file's measured threshold (MEASURED_THRESHOLDS), else a fine-tuned network's 0.5."""
    return MEASURED_THRESHOLDS.get(weights.name, DEFAULT_THRESHOLD)


def weights_path(given: str | None) -> Path:
    """--weights as given, a shipped file by its bare name (`Meso4_F2F.h5`), or the default."""
    weights = Path(given) if given else SHIPPED / DEFAULT_WEIGHTS
    return SHIPPED / weights.name if not weights.exists() and (SHIPPED / weights.name).is_file() else weights


def assemble(out: Path, weights: Path, frames: int = 32, fps: float = DEFAULT_FPS, threshold: float = DEFAULT_THRESHOLD,
             select: str = "largest", bundle_id: str | None = None, trust: bool = False) -> Path:
    """A trained bundle from a MesoNet weight file (a published .h5, or a fine-tuned one): the
    manifest records the file's name, sha256, architecture, training set and licence."""
    from engines.checksums import sha256_file
    from engines.families.writing import begin_bundle, finish_bundle
    from engines.models.checkpoints import load_mesonet, save_mesonet
    from engines.models.published import published_source

    net = load_mesonet(weights, trust)
    out = begin_bundle(out)
    save_mesonet(out / FAMILY.part("frame").file, net)
    published = published_source(Path(weights).name)
    training_set = training_set_of(Path(weights).name) if published else "fine-tuned"
    sha = sha256_file(Path(weights))
    sources = {"weights": Path(weights).name, "sha256": sha, "licence": LICENCE,
               "published": published["name"] if published else None,
               "training_data": published["training_data"] if published else None}
    return finish_bundle(
        FAMILY, out, trained=True, bundle_id=bundle_id or f"mesonet-{Path(weights).stem}-{sha[:8]}",
        window={"frames": frames, "clip_frames": 0, "fps": fps}, threshold=threshold, crop=crop_policy(select),
        frame=FrameSection(normalization=UNIT_NORM, input=[3, 256, 256], architecture=net.architecture,
                           training_set=training_set or "unknown"),
        sources=sources)


FAMILY = MesoNetFamily()
