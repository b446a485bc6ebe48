"""Model bundles: a directory with `manifest.json` and the weight files the daemon loads.

What a bundle holds depends on its model family (`manifest.family`, engines/families/): the
family's parts, each a weight file (and optionally an ONNX file), plus everything a model needs
besides its weights — input sizes, normalisation, the face-crop method, window length,
analysis frame rate, decision threshold, training provenance — and the sha256 of every file, so
the daemon sees the same pixels the model was trained on and refuses a bundle that was changed
behind its back. Family modules assemble bundles with `begin_bundle`/`finish_bundle`
(engines/families/writing.py); this module reads them, derives trained ones and renames them.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from engines import __version__
from engines.bundles.manifest import read_manifest, verify_file
from engines.errors import BundleError
from engines.families import Family, get_family
from engines.families.schema import ManifestBase
from engines.families.writing import begin_bundle, file_entry, now, write_manifest
from engines.pipeline.specs import CropSpec, Normalization


@dataclass
class Bundle:
    """A validated bundle on disk: its folder, its typed manifest and its family."""
    root: Path
    manifest: ManifestBase

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def family(self) -> str:
        return self.manifest.family

    @property
    def checksum(self) -> str:
        """The manifest's digest, which covers every file: what scan reports and evidence name."""
        return self.manifest.digest or "unsealed"

    @property
    def spec(self) -> Family:
        """What the bundle's family is (parts, window rule, ...): engines/families."""
        return get_family(self.manifest.family)

    @property
    def parts(self) -> tuple[str, ...]:
        return self.spec.part_names

    @property
    def frame_part(self) -> str:
        return self.spec.frame_part

    @property
    def trained(self) -> bool:
        return self.manifest.trained

    @property
    def frames(self) -> int:
        return self.manifest.window.frames

    @property
    def clip_frames(self) -> int:
        """Frames per content clip; 0 for a family without content clips."""
        return self.manifest.window.clip_frames

    @property
    def fps(self) -> float:
        return self.manifest.window.fps

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    @property
    def crop(self) -> CropSpec:
        return self.manifest.crop

    @property
    def frame_norm(self) -> Normalization:
        """Input normalisation of the per-frame part."""
        return self.manifest.frame_normalization()

    @property
    def content_norm(self) -> Normalization | None:
        return self.manifest.content_normalization()

    def path(self, part: str) -> Path:
        return self.root / self.manifest.files[part].path

    def onnx_path(self, part: str) -> Path | None:
        entry = self.manifest.onnx.get(part)
        return self.root / entry.path if entry else None

    def int8_path(self, part: str) -> Path | None:
        entry = self.manifest.int8.get(part)
        return self.root / entry.path if entry else None

    def module(self, part: str):
        """The torch module a part's runner (and its ONNX file) computes."""
        return self.spec.torch_module(self, part)

    def input_shapes(self, part: str) -> dict[str, tuple[int, ...]]:
        """Input name -> shape of one batch item, for this bundle's sizes."""
        return self.spec.input_shapes(self, part)


# ---- writing ---------------------------------------------------------------------------------

def derive(source: Bundle, out: Path, trained: Path, fps: float | None = None, threshold: float | None = None,
           training: dict | None = None, bundle_id: str | None = None, operating_points: dict | None = None) -> Bundle:
    """A new bundle with `source`'s preprocessing and untouched parts plus a trained part (the
    family's `trained_part`, from 'dfwatch train fit'): what `dfwatch train export` writes."""
    out = Path(out)
    if out.resolve() == source.root.resolve():
        raise BundleError(f"{out}: export into a new directory, not the source bundle")
    out = begin_bundle(out)
    family = source.spec
    updates = family.adopt_trained(source, Path(trained), out)
    for part in family.parts:
        if part.name != family.trained_part:
            shutil.copyfile(source.path(part.name), out / part.file)
    files = {part.name: file_entry(out, part.file) for part in family.parts}
    window = {**updates.pop("window", source.manifest.window.model_dump(mode="json")), "fps": fps or source.fps}
    manifest = {**source.manifest.as_json(), **updates,
                "id": bundle_id or f"{family.name}-{files[family.trained_part]['sha256'][:8]}",
                "created_at": now(), "code_version": __version__, "trained": True, "onnx": {}, "int8": {},
                "threshold": source.threshold if threshold is None else threshold, "window": window,
                "training": training, "files": files, "operating_points": operating_points,
                "sources": {**source.manifest.sources, family.trained_part: Path(trained).name,
                            "derived_from": source.id}}
    write_manifest(out, family.manifest_type.model_validate(manifest))
    return load_bundle(out)


def with_id(bundle: Bundle, bundle_id: str) -> Bundle:
    """The bundle renamed in place (its files unchanged)."""
    write_manifest(bundle.root, bundle.manifest.model_copy(update={"id": bundle_id}))
    return load_bundle(bundle.root)


# ---- loading and validation ------------------------------------------------------------------

def load_bundle(root: str | Path, verify: bool = True, check_onnx: bool = True) -> Bundle:
    """Reads and validates a bundle: format, version, required fields, files and checksums
    (ONNX files too unless `check_onnx` is false, as when they are about to be re-exported)."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        entries = {p: manifest.files[p] for p in get_family(manifest.family).part_names}
        if check_onnx:
            entries.update({f"ONNX {p}": e for p, e in manifest.onnx.items()})
            entries.update({f"INT8 {p}": e for p, e in manifest.int8.items()})
            _check_int8_sources(root, manifest)
        for part, entry in entries.items():
            verify_file(root, part, entry)
    return Bundle(root, manifest)


def _check_int8_sources(root: Path, manifest: ManifestBase) -> None:
    """An INT8 model made from another float32 export than the current one is stale."""
    for part, entry in manifest.int8.items():
        source = manifest.onnx.get(part)
        if source is None or source.sha256 != entry.from_onnx_sha256:
            raise BundleError(f"{root / entry.path}: made from an earlier ONNX export of '{part}'; "
                              f"run 'dfwatch engines quantize {root}' again")


def describe(bundle: Bundle) -> str:
    """Human-readable summary for `dfwatch engines info`."""
    m = bundle.manifest
    c = m.crop
    lines = [
        f"bundle {bundle.id}  ({bundle.root})",
        f"  family {m.family}, {'TRAINED' if bundle.trained else 'UNTRAINED: scores mean nothing'}, "
        f"created {m.created_at} by dfwatch {m.code_version}",
        *bundle.spec.describe(bundle, f"crop {c.method} (margin {c.margin:g}, {c.size} px)"),
    ]
    for part, entry in {**m.files, **{f"onnx:{k}": v for k, v in m.onnx.items()},
                        **{f"int8:{k}": v for k, v in m.int8.items()}}.items():
        lines.append(f"  {part:<14} {entry.path:<28} {entry.bytes / 1e6:8.1f} MB  sha256 {entry.sha256[:16]}")
    if m.training:
        metrics = m.training.get("metrics", {})
        lines.append("  training: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in metrics.items()))
    return "\n".join(lines + operating_lines(m.operating_points))


def operating_lines(op: dict | None) -> list[str]:
    """The bundle's operating points as `engines info` prints them (or that it has none)."""
    if not op:
        return ["  operating points: none (uncalibrated: its threshold's false-alarm rate is unknown; "
                "'dfwatch train eval' then 'train export --report' record them, 'dfwatch calibrate' sets a site's)"]
    lines = [f"  operating points ({op.get('split') or 'validation'} split: {op['negatives']} real and "
             f"{op['positives']} fake windows; FPR upper bound at {op['confidence']:.0%}):"]
    for p in op["points"]:
        if p["threshold"] is None:
            lines.append(f"    FPR <= {p['target_fpr']:g}: no threshold reaches it on this split")
            continue
        note = "" if p["supported"] else f" (too few real windows to show it: {op['negatives']} support ~{3 / op['negatives']:.2g})"
        lines.append(f"    FPR <= {p['target_fpr']:g}: threshold {p['threshold']:.4g}, TPR {p['tpr']:.3f}, "
                     f"FPR {p['fpr']:.3g} (upper {p['fpr_upper']:.3g}){note}")
    return lines
