"""ONNX export of a bundle's parts, with a dynamic batch dimension.

Each file computes what the torch module computes, with the same inputs and outputs:
  style    images (B, 3, 256, 256) in [-1, 1]        -> codes (B, levels, 512), latent_avg included
  content  clips (B, 3, T, 112, 112) Kinetics-norm.  -> features (B, 2048)
  head     style (B, T, levels, 512), content (B, N, 2048) -> probability (B,)
  frame    faces (B, 3, 224, 224) ImageNet-norm.     -> probability (B,)   (DLDFD)
Only the style levels the bundle uses are exported (the level-9 encoder is ~190 MB, not 1.07 GB).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from engines.bundles.bundle import Bundle, BundleError, file_entry, load_bundle, write_manifest
from engines.models.dldfd import DLDFDProbability
from engines.models.stylegru import StyleGRUProbability

OPSET = 17
ONNX_DIR = "onnx"
IO_NAMES = {  # part -> (input names, output names): the runners' contract
    "style": (["images"], ["codes"]),
    "content": (["clips"], ["features"]),
    "head": (["style", "content"], ["probability"]),
    "frame": (["faces"], ["probability"]),
}


def example_inputs(bundle: Bundle, part: str, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes (batch 2 so that tracing cannot specialise the batch to 1)."""
    g = torch.Generator().manual_seed(0)
    if part == "style":
        s = bundle.style_norm.size
        return (torch.rand(batch, 3, s, s, generator=g) * 2 - 1,)
    if part == "content":
        s = bundle.content_norm.size
        return (torch.randn(batch, 3, bundle.clip_frames, s, s, generator=g),)
    if part == "frame":
        s = bundle.frame_norm.size
        return (torch.randn(batch, 3, s, s, generator=g),)
    cfg = bundle.head_config
    return (torch.randn(batch, cfg.frames, cfg.style_levels, cfg.style_dim, generator=g),
            torch.randn(batch, cfg.content_tokens, cfg.content_dim, generator=g))


def torch_module(bundle: Bundle, part: str) -> nn.Module:
    """The torch module a part's runner (and its ONNX file) computes."""
    if part == "style":
        return bundle.style_encoder()
    if part == "content":
        return bundle.content_trunk()
    if part == "frame":
        return DLDFDProbability(bundle.frame_model()).eval()
    return StyleGRUProbability(bundle.head()).eval()


def export_part(bundle: Bundle, part: str, out: Path) -> None:
    module = torch_module(bundle, part)
    inputs, outputs = IO_NAMES[part]
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    if part == "content":
        dynamic["clips"] = {0: "batch", 2: "frames"}
    out.parent.mkdir(parents=True, exist_ok=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer kernel has no ONNX form
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about GRU batch_first and python asserts
            torch.onnx.export(module, example_inputs(bundle, part), str(out), input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET,
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
    manifest = dict(bundle.manifest)
    onnx_entries = dict(manifest.get("onnx", {}))
    for part in parts:
        rel = f"{ONNX_DIR}/{part}.onnx"
        export_part(bundle, part, bundle.root / rel)
        onnx_entries[part] = {**file_entry(bundle.root, rel), "opset": OPSET, "inputs": IO_NAMES[part][0],
                              "outputs": IO_NAMES[part][1]}
    manifest["onnx"] = onnx_entries
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)
