"""What a model family is: its parts as data, plus the few functions that differ between families.

A family (StyleGRU, DLDFD) is one module in this package that declares a `Family` instance; the
registry (engines/families/__init__.py) lists them. Everything else — bundles, ONNX export, the
backends, TensorRT profiles, the per-stream pipeline, training, the daemon — asks the family
instead of testing its name, so a third family is one new module.

Torch-free at import time (hosts without torch read manifests through the registry); the
functions that build or run models import torch inside.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from engines.families.schema import ManifestBase

if TYPE_CHECKING:  # pragma: no cover
    from engines.pipeline.analysis import WindowInputs
    from engines.pipeline.decision import Decision
    from engines.pipeline.specs import CropSpec, Normalization

# What `dfwatch train extract` caches for a family (the training module reads the cache by kind):
CACHE_WINDOW_INPUTS = "window-inputs"  # the trained part's inputs per window; the parts before it are frozen
CACHE_FACE_CROPS = "face-crops"        # every sampled frame's face crop; the per-frame model is what trains


@dataclass(frozen=True)
class Part:
    """One model of a bundle: a weight file, an ONNX file and a runner, with one contract."""
    name: str                          # e.g. "style"; the key in the manifest's files/onnx
    file: str                          # its weight file in a bundle
    inputs: tuple[str, ...]            # input names in call order (ONNX, TensorRT, every runner)
    outputs: tuple[str, ...]
    per: str                           # what one batch item is: "frame" | "clip" | "window"
    channels_last: bool = False        # a 2D convolution network: channels-last on a GPU
    extra_axes: dict = field(default_factory=dict)  # input -> {axis: label}, dynamic besides the batch

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {name: {0: "batch"} for name in self.inputs + self.outputs}
        for name, extra in self.extra_axes.items():
            axes[name] = {**axes[name], **extra}
        return axes


class Bundle(Protocol):
    """What a family needs of a bundle it is handed: engines/bundles/bundle.py's `Bundle` is one.
    Declared here so that the registry is a leaf: families never import the bundles package,
    which reads bundles through them."""
    root: Path
    manifest: ManifestBase

    @property
    def id(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def trained(self) -> bool: ...
    @property
    def threshold(self) -> float: ...
    @property
    def frames(self) -> int: ...
    @property
    def clip_frames(self) -> int: ...
    @property
    def fps(self) -> float: ...

    def path(self, part: str) -> Path: ...


@dataclass(frozen=True)
class SourceOption:
    """A checkpoint `dfwatch engines bundle` assembles this family from (a command-line flag)."""
    flag: str                          # e.g. "--psp"
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class Family:
    """A model family. Subclasses set the class attributes and implement the methods."""
    name: ClassVar[str]                        # as in manifests and --family
    title: ClassVar[str]                       # as in prose
    summary: ClassVar[str]                     # one line for --help
    parts: ClassVar[tuple[Part, ...]]
    frame_part: ClassVar[str]                  # runs once per analysed frame (on its face crop)
    content_part: ClassVar[str | None] = None  # runs once per content clip, if the family has clips
    trained_part: ClassVar[str]                # what 'dfwatch train' produces
    training_cache: ClassVar[str]              # CACHE_WINDOW_INPUTS | CACHE_FACE_CROPS
    manifest_type: ClassVar[type[ManifestBase]]
    sources: ClassVar[tuple[SourceOption, ...]]
    sources_hint: ClassVar[str]                # which of `sources` a bundle needs, in words
    demo_fps: ClassVar[float]                  # the demo bundle's analysis rate on a 2-core CPU
    frame_rule: ClassVar[str] = ""             # frame-level families: their window rule, in words (reports)
    default_threshold: ClassVar[float] = 0.5   # a new bundle's threshold on P(fake) unless told (see below)
    demo_is_real: ClassVar[bool] = False       # `dfwatch demo` serves real, trained weights (no stand-ins)
    has_demo: ClassVar[bool] = True            # `build_demo` makes a bundle by itself (demo, benchmarks)

    # -- data ---------------------------------------------------------------------------------
    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"a {self.name} bundle has no part {name!r} (its parts: {', '.join(self.part_names)})")

    # -- models -------------------------------------------------------------------------------
    def input_shapes(self, bundle: Bundle, part: str) -> dict[str, tuple[int, ...]]:
        """Input name -> shape of one batch item (without the batch dimension)."""
        raise NotImplementedError

    def torch_module(self, bundle: Bundle, part: str):
        """The torch module a part's runner (and its ONNX file) computes."""
        raise NotImplementedError

    # -- windows ------------------------------------------------------------------------------
    def decide(self, windows: list[WindowInputs], runners: dict, threshold: float) -> list[Decision]:
        """Verdicts for ready windows (windows with too few faces are no_face)."""
        raise NotImplementedError

    def decide_frames(self, probabilities, threshold: float) -> Decision:
        """Frame-level families: one window's decision from its face frames' P(fake) (`decide` and
        training evaluation both use it)."""
        raise NotImplementedError

    # -- training on cached face crops (training_cache == CACHE_FACE_CROPS) -------------------------
    def trainable(self, bundle: Bundle):
        """The per-frame network training starts from (the bundle's weights), giving (B,) logits."""
        raise NotImplementedError

    def load_trained(self, path: Path, trust: bool = False):
        """A network 'dfwatch train fit' wrote (or the family's own weight file), giving (B,) logits."""
        raise NotImplementedError

    def save_trained(self, path: Path, model, extra: dict | None = None) -> None:
        raise NotImplementedError

    def probability(self, model):
        """The served module of a trained network: P(fake) per face."""
        raise NotImplementedError

    def trained_normalization(self, model) -> Normalization:
        """The input normalisation of a trained network (its input size included)."""
        raise NotImplementedError

    # -- bundles ------------------------------------------------------------------------------
    def describe(self, bundle: Bundle, crop: str) -> list[str]:
        """The family's lines of `dfwatch engines info`."""
        raise NotImplementedError

    def adopt_trained(self, source: Bundle, trained: Path, out: Path) -> dict:
        """Writes a trained part file (from 'dfwatch train fit') into bundle folder `out`,
        after checking it fits `source`; returns the manifest fields it changes, as JSON values."""
        raise NotImplementedError

    def threshold_for(self, args: argparse.Namespace) -> float:
        """`dfwatch engines bundle` without --threshold: the threshold a bundle of these sources gets."""
        return self.default_threshold

    def assemble_from_args(self, args: argparse.Namespace, crop: CropSpec, trust: bool) -> Path:
        """`dfwatch engines bundle --family NAME`: a bundle (its folder) from this family's source checkpoints."""
        raise NotImplementedError

    def build_demo(self, root: Path, seed: int, trained: Path | None) -> Path:
        """A bundle (its folder) from stand-in weights in the official layouts (`dfwatch demo`, benchmarks)."""
        raise NotImplementedError


class FrameFamily(Family):
    """A frame-level family: one part, `frame`, gives P(fake) per face crop, and a window's decision
    comes from its face frames' probabilities alone (`decide_frames`, the family's rule)."""
    frame_part = trained_part = "frame"
    training_cache = CACHE_FACE_CROPS

    def input_shapes(self, bundle: Bundle, part: str) -> dict[str, tuple[int, ...]]:
        s = bundle.manifest.frame.normalization.size
        return {"faces": (3, s, s)}

    def decide(self, windows: list[WindowInputs], runners: dict, threshold: float) -> list[Decision]:
        from engines.pipeline.decision import NO_FACE

        # each real face frame counts once (a short stream's padded window repeats frames)
        return [self.decide_frames(w.encodings[w.found & w.first], threshold) if w.enough_faces else NO_FACE
                for w in windows]
