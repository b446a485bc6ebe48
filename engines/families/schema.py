"""The bundle manifest's typed schema: the fields every family has.

`manifest.json` is one pydantic model per family (each family module subclasses `ManifestBase`
with its own sections, e.g. the style encoder's levels), discriminated on `family` by the
registry (engines/families). Reading, validating and writing go through these models only, so
the bundle format can be learnt here rather than from the code that writes it. Torch-free:
capture hosts read manifests.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engines.pipeline.specs import CropSpec, Normalization

FORMAT = "dfwatch-bundle"
FORMAT_VERSION = 1


class Model(BaseModel):
    # unknown keys survive a read-write round trip (a newer dfwatch may add optional ones)
    model_config = ConfigDict(extra="allow")


class FileEntry(Model):
    """A file of the bundle, pinned by its checksum."""
    path: str                # relative to the bundle directory
    sha256: str
    bytes: int


class OnnxEntry(FileEntry):
    opset: int
    inputs: list[str]
    outputs: list[str]


class Int8Entry(OnnxEntry):
    """An INT8 model made from the part's float32 ONNX file (`dfwatch engines quantize`)."""
    from_onnx_sha256: str                # the float32 export it was quantized from
    calibration: dict                    # sha256 of the crop set, how many crops and samples
    settings: dict                       # quantization format and types


class Window(Model):
    frames: int                          # T, analysed frames per verdict window
    clip_frames: int = 0                 # frames per content clip; 0: a family without content clips
    fps: float                           # the analysis frame rate the model was trained at


class ManifestBase(Model):
    """The fields every bundle has; `family`'s subclass adds the family's own sections."""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    id: str
    created_at: str
    code_version: str
    family: str
    trained: bool                        # false: scores mean nothing (the trained part is freshly initialised)
    window: Window
    threshold: float                     # decision threshold on P(fake)
    crop: CropSpec
    training: dict | None = None         # provenance and metrics of 'dfwatch train export'
    files: dict[str, FileEntry]          # part -> its weight file
    onnx: dict[str, OnnxEntry] = Field(default_factory=dict)   # part -> its ONNX export, if any
    int8: dict[str, Int8Entry] = Field(default_factory=dict)   # part -> its INT8 model, if quantized
    sources: dict = Field(default_factory=dict)                # the checkpoints it was made from
    # what thresholds cost on the validation split ('dfwatch train eval', kept by export): target
    # FPRs with threshold, TPR and the FPR's upper bound, and the ROC (engines/operating_points.py);
    # None: uncalibrated (bundles before 0.5 too)
    operating_points: dict | None = None
    digest: str | None = None    # sha256 of the rest of the manifest (engines/bundles/manifest.py); None: dfwatch 0.2

    def frame_normalization(self) -> Normalization:
        """Input normalisation of the per-frame part."""
        raise NotImplementedError

    def content_normalization(self) -> Normalization | None:
        """Input normalisation of the content clips; None for a family without them."""
        return None

    def as_json(self) -> dict:
        """The manifest as written to manifest.json."""
        return self.model_dump(mode="json")

