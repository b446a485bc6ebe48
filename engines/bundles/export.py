"""ONNX export of a bundle's parts, with a dynamic batch dimension.

Each file computes what the part's torch module computes, with the inputs, outputs and dynamic
axes its family declares (engines/families/), e.g. for StyleGRU:
  style    images (B, 3, 256, 256) in [-1, 1]        -> codes (B, levels, 512), latent_avg included
  content  clips (B, 3, T, 112, 112) Kinetics-norm.  -> features (B, 2048)
  head     style (B, T, levels, 512), content (B, N, 2048) -> probability (B,)
Only the style levels the bundle uses are exported (the level-9 encoder is ~190 MB, not 1.07 GB).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from engines.bundles.bundle import Bundle, load_bundle
from engines.errors import BundleError
from engines.families.writing import file_entry, write_manifest

OPSET = 17
ONNX_DIR = "onnx"


def example_inputs(bundle: Bundle, part: str, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Random inputs of the part's shapes (batch 2 so that tracing cannot specialise the batch to 1)."""
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(batch, *shape, generator=g) for shape in bundle.input_shapes(part).values())


def export_part(bundle: Bundle, part: str, out: Path) -> None:
    spec = bundle.spec.part(part)
    export_module(bundle.module(part), example_inputs(bundle, part), out, spec.inputs, spec.outputs, spec.dynamic_axes())


def export_module(module: torch.nn.Module, example: tuple, out: Path, inputs, outputs, dynamic_axes: dict) -> None:
    """One module to an ONNX file at opset OPSET, traced on `example`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer kernel has no ONNX form
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about GRU batch_first and python asserts
            torch.onnx.export(module, tuple(torch.as_tensor(x) for x in example), str(out), input_names=list(inputs),
                              output_names=list(outputs), dynamic_axes=dynamic_axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def export_bundle(root: str | Path, parts: tuple[str, ...] | None = None) -> Bundle:
    """Writes onnx/<part>.onnx (default: every part of the bundle's family) into the bundle and
    records them with checksums in the manifest."""
    bundle = load_bundle(root, check_onnx=False)
    parts = parts or bundle.parts
    foreign = [p for p in parts if p not in bundle.parts]
    if foreign:
        raise BundleError(f"{bundle.root}: a {bundle.family} bundle has no part(s) {', '.join(foreign)} "
                          f"(its parts: {', '.join(bundle.parts)})")
    manifest = bundle.manifest.as_json()
    for part in parts:
        rel = f"{ONNX_DIR}/{part}.onnx"
        export_part(bundle, part, bundle.root / rel)
        spec = bundle.spec.part(part)
        manifest["onnx"][part] = {**file_entry(bundle.root, rel), "opset": OPSET, "inputs": list(spec.inputs),
                                  "outputs": list(spec.outputs)}
    manifest["int8"] = {k: v for k, v in manifest["int8"].items() if k not in parts}  # made from the old export
    write_manifest(bundle.root, bundle.spec.manifest_type.model_validate(manifest))
    return load_bundle(bundle.root)
