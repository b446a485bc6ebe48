"""Checkpoint files: read safely, unwrap, check keys and shapes, load strictly.

A few small functions in the manner of timm's `_helpers.py`. Every failure is one
`CheckpointError` whose message says what was expected and what was found. Files load with
`torch.load(weights_only=True)` unless the caller explicitly trusts them.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from engines.errors import DfwatchError
from engines.models.dldfd import DLDFD, DLDFDConfig, resnet50_trunk
from engines.models.icpr import ICPRNet, variant_of
from engines.models.mesonet import MesoConfig, MesoNet
from engines.models.psp import N_STYLES, STYLE_DIM, PSPStyleEncoder
from engines.models.r3d import SlowR50
from engines.models.stylegru import StyleGRUConfig, StyleGRUHead

STYLE_ENCODER_FORMAT = "dfwatch-style-encoder"  # the levels a bundle uses of a pSp encoder
HEAD_FORMAT = "dfwatch-head"
HEAD_FORMAT_VERSION = 2  # 2: input standardisation buffers (style/content mean and std)
DLDFD_FORMAT = "dfwatch-dldfd"
DLDFD_FORMAT_VERSION = 1
MESONET_FORMAT = "dfwatch-mesonet"
MESONET_FORMAT_VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PSP_PROBE = "encoder.body.0.res_layer.1.weight"
SLOW_R50_PROBE = "blocks.1.res_blocks.0.branch2.conv_a.weight"
RESNET50_PROBE = "layer4.2.conv3.weight"
ICPR_PROBE = "efficientnet._conv_stem.weight"
IMAGENET_CLASSIFIER = {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


class CheckpointError(DfwatchError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def read_checkpoint(path: str | Path, trust: bool = False) -> object:
    """torch.load on the CPU; weights_only unless `trust`. Memory-maps when the format allows."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=not trust)  # legacy (pre-zip) format
    except pickle.UnpicklingError as e:
        if not trust and "weights only load failed" in str(e).lower():
            raise CheckpointError(
                f"{path}: holds Python objects that safe loading (weights_only=True) refuses "
                f"({_unsafe_global(e)}); if you trust this file, load it with trust=True "
                f"(model.trust_checkpoints: true, or --trust)") from None
        raise CheckpointError(f"{path}: truncated, corrupt or not a PyTorch checkpoint (unpickling failed)") from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt ({type(e).__name__}); download it again") from None
    except Exception as e:  # torch raises RuntimeError, KeyError, ValueError... on foreign bytes
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: truncated, corrupt or not a PyTorch checkpoint ({first})") from None


def _unsafe_global(e: Exception) -> str:
    """The offending global from torch's weights_only message, e.g. 'argparse.Namespace'."""
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
    return f"it needs {m.group(1)}" if m else "it needs classes beyond tensors and plain containers"


def unwrap_state_dict(obj: object, keys: Sequence[str] = ("state_dict", "model_state", "model")) -> dict:
    """The tensor dict inside a checkpoint: the first of `keys` present, else the object itself."""
    if isinstance(obj, Mapping):
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                return dict(obj[key])
        return dict(obj)
    raise CheckpointError(f"expected a dict of tensors, found a {type(obj).__name__}")


def strip_prefix(state_dict: Mapping, prefix: str) -> dict:
    """Keys starting with `prefix`, without it (e.g. 'encoder.', 'module.')."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _summary(keys: Iterable[str], limit: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(state_dict: Mapping, expected: Mapping[str, tuple], what: str, path: str | Path) -> None:
    """Raises CheckpointError unless `state_dict` has exactly the expected keys and shapes."""
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_summary(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_summary(unexpected)})")
    for key in sorted(set(expected) & set(state_dict)):
        found = tuple(getattr(state_dict[key], "shape", ()))
        if found != tuple(expected[key]):
            problems.append(f"first shape mismatch: {key} is {found}, expected {tuple(expected[key])}")
            break
    if problems:
        raise CheckpointError(f"{path}: not a {what} checkpoint: " + "; ".join(problems))


def expected_shapes(build: callable) -> dict[str, tuple]:
    """Key -> shape of a module, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = build()
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def parameter_count(state_dict: Mapping) -> int:
    return sum(v.numel() for k, v in state_dict.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not k.endswith(("running_mean", "running_var")))


# ---- pSp -----------------------------------------------------------------------------------

def _psp_latent_avg(ckpt: Mapping, levels: Sequence[int], path) -> torch.Tensor:
    avg = ckpt.get("latent_avg")
    if not isinstance(avg, torch.Tensor):
        raise CheckpointError(f"{path}: opts.start_from_latent_avg is true but the file has no latent_avg tensor")
    if tuple(avg.shape) == (STYLE_DIM,):
        return avg.float().expand(len(levels), -1).clone()
    if tuple(avg.shape) == (N_STYLES, STYLE_DIM):
        return avg.float()[list(levels)].clone()
    raise CheckpointError(f"{path}: latent_avg has shape {tuple(avg.shape)}, expected (18, 512) or (512,)")


def load_psp_encoder(path: str | Path, levels: Sequence[int] = (9,), trust: bool = False) -> PSPStyleEncoder:
    """The pSp encoder of an official `psp_ffhq_encode.pt`, built and run only for `levels`.

    forward((B, 3, 256, 256) in [-1, 1]) -> (B, len(levels), 512) W+ codes, latent_avg included
    when the checkpoint's opts say start_from_latent_avg (what pSp feeds its decoder)."""
    ckpt = read_checkpoint(path, trust)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        found = sorted(ckpt)[:5] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a pSp checkpoint: expected a dict with 'state_dict', 'opts' and "
                              f"'latent_avg', found {found}")
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, Mapping):
        opts = vars(opts) if hasattr(opts, "__dict__") else {}
    encoder_type = opts.get("encoder_type", "GradualStyleEncoder")
    if encoder_type != "GradualStyleEncoder":
        raise CheckpointError(f"{path}: pSp encoder_type is {encoder_type}; only GradualStyleEncoder "
                              "(psp_ffhq_encode.pt) is supported")
    encoder_sd = strip_prefix(ckpt["state_dict"], "encoder.")
    check_state_dict(encoder_sd, expected_shapes(lambda: PSPStyleEncoder(range(N_STYLES)).encoder),
                     "pSp encoder", path)
    model = PSPStyleEncoder(levels, start_from_latent_avg=bool(opts.get("start_from_latent_avg", False)))
    wanted = model.encoder.state_dict().keys()
    model.encoder.load_state_dict({k: v for k, v in encoder_sd.items() if k in wanted}, strict=True)
    if model.start_from_latent_avg:
        model.latent_avg.copy_(_psp_latent_avg(ckpt, model.levels, path))
    return model.eval()


# ---- slow_r50 ------------------------------------------------------------------------------

def load_slow_r50(path: str | Path, trust: bool = False) -> SlowR50:
    """pytorchvideo slow_r50 from `model_state` (or a bare state dict, `module.` prefixes stripped).

    forward((B, 3, T, H, W) Kinetics-normalised) -> (B, 2048)."""
    state_dict = unwrap_state_dict(read_checkpoint(path, trust), ("model_state", "state_dict", "model"))
    if any(k.startswith("module.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "module.")
    if PSP_PROBE in state_dict or any(k.startswith("encoder.") for k in state_dict):
        raise CheckpointError(f"{path}: this is a pSp checkpoint, not slow_r50 (SLOW_8x8_R50.pyth); "
                              "pass it as the pSp encoder instead")
    check_state_dict(state_dict, expected_shapes(SlowR50), "slow_r50", path)
    model = SlowR50()
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


# ---- torchvision ResNet-50 (ImageNet) and DLDFD -------------------------------------------

def load_resnet50_imagenet(path: str | Path, trust: bool = False) -> dict:
    """The trunk state dict of a torchvision ResNet-50 ImageNet file (`resnet50-*.pth`, a plain
    state dict), checked strictly against torchvision's keys; the 1000-class classifier is
    checked too and then set aside (DLDFD replaces it with a one-logit fc)."""
    state_dict = unwrap_state_dict(read_checkpoint(path, trust), ("state_dict", "model"))
    if any(k.startswith("module.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "module.")
    expected = {**expected_shapes(resnet50_trunk), **IMAGENET_CLASSIFIER}
    check_state_dict(state_dict, expected, "torchvision ResNet-50 (ImageNet)", path)
    return {k: v for k, v in state_dict.items() if k not in IMAGENET_CLASSIFIER}


def dldfd_from_imagenet(path: str | Path, cfg: DLDFDConfig = DLDFDConfig(), seed: int = 0,
                        trust: bool = False) -> DLDFD:
    """A DLDFD ready for training: ImageNet trunk, freshly initialised stem and fc (seeded)."""
    trunk = load_resnet50_imagenet(path, trust)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DLDFD(cfg)
    model.trunk.load_state_dict(trunk, strict=True)
    return model.eval()


def save_dldfd(path: str | Path, model: DLDFD, extra: Mapping | None = None) -> None:
    save_own_format(path, DLDFD_FORMAT, DLDFD_FORMAT_VERSION, model, extra)


def load_dldfd(path: str | Path, trust: bool = False) -> DLDFD:
    return load_own_format(path, trust, DLDFD_FORMAT, DLDFD_FORMAT_VERSION, "DLDFD", DLDFDConfig, DLDFD,
                           "they come from 'dfwatch engines bundle --family dldfd' or 'dfwatch train fit'")


# ---- the ICPR 2020 detectors (EfficientNet-B4, with or without attention) ------------------------

def load_icpr(path: str | Path, trust: bool = False) -> ICPRNet:
    """A published ICPR 2020 detector (`*_bestval-<sha256>.pth`: the network under `net`, beside the
    optimiser's state; a plain state dict is taken too) or one `dfwatch train fit` wrote, strictly."""
    state = unwrap_state_dict(read_checkpoint(path, trust), ("net", "state_dict", "model"))
    if any(k.startswith("module.") for k in state):
        state = strip_prefix(state, "module.")
    variant = variant_of(state)
    what = "ICPR 2020 EfficientNet-B4" + (" with attention" if variant == "b4att" else "")
    check_state_dict(state, expected_shapes(lambda: ICPRNet(variant)), what, path)
    net = ICPRNet(variant)
    net.load_state_dict(state, strict=True)
    return net.eval()


def save_icpr(path: str | Path, net: ICPRNet, extra: Mapping | None = None) -> None:
    """The published layout (the network under `net`), with dfwatch's notes under `extra`: the
    file loads where the authors' code loads its own."""
    torch.save({"net": net.state_dict(), "extra": dict(extra or {})}, path)


# ---- MesoNet: the published Keras HDF5 files, and our own format for fine-tuned ones ----------

def is_hdf5(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except OSError:
        return False


def load_mesonet(path: str | Path, trust: bool = False) -> MesoNet:
    """A published MesoNet weight file (Keras HDF5: Meso4_DF.h5, ...; read with h5py, no pickle)
    or one `dfwatch train fit` / a bundle wrote, strictly."""
    if not is_hdf5(path):
        return load_own_format(path, trust, MESONET_FORMAT, MESONET_FORMAT_VERSION, "MesoNet", MesoConfig, MesoNet,
                               "they are the published Keras .h5 files or come from 'dfwatch train fit'")
    import h5py

    from engines.models.mesonet import from_keras, keras_layers

    try:
        with h5py.File(path, "r") as h5:
            return from_keras(keras_layers(h5))
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: not a MesoNet Keras weight file ({e}); the published ones are "
                              "Meso4_DF.h5, Meso4_F2F.h5, MesoInception_DF.h5, MesoInception_F2F.h5") from None


def save_mesonet(path: str | Path, net: MesoNet, extra: Mapping | None = None) -> None:
    save_own_format(path, MESONET_FORMAT, MESONET_FORMAT_VERSION, net, extra)


# ---- the head (our own format) -------------------------------------------------------------

def save_head(path: str | Path, head: StyleGRUHead, extra: Mapping | None = None) -> None:
    save_own_format(path, HEAD_FORMAT, HEAD_FORMAT_VERSION, head, extra)


def load_head(path: str | Path, trust: bool = False) -> StyleGRUHead:
    return load_own_format(path, trust, HEAD_FORMAT, HEAD_FORMAT_VERSION, "head", StyleGRUConfig, StyleGRUHead,
                           "heads come from 'dfwatch train export'")


# ---- our own files: a config as a plain dict + tensors -------------------------------------

def save_own_format(path: str | Path, fmt: str, version: int, model: torch.nn.Module,
                    extra: Mapping | None = None) -> None:
    """A file that loads with weights_only=True: format tag, version, `model.cfg` as a plain
    dict, the state dict and `extra` (e.g. a training summary as a JSON string)."""
    torch.save({"format": fmt, "version": version, "config": model.cfg.to_dict(),
                "state_dict": model.state_dict(), "extra": dict(extra or {})}, path)


def load_own_format(path: str | Path, trust: bool, fmt: str, version: int, what: str, config_class, build,
                    origin: str) -> torch.nn.Module:
    """The model of a `save_own_format` file, built from its config and loaded strictly."""
    ckpt = read_checkpoint(path, trust)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != fmt:
        raise CheckpointError(f"{path}: not a dfwatch {what} file (expected format '{fmt}'; {origin})")
    if ckpt.get("version") != version:
        raise CheckpointError(f"{path}: {what} format version {ckpt.get('version')}, this build reads "
                              f"{version}; upgrade dfwatch or re-export the file")
    try:
        cfg = config_class.from_dict(ckpt["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: {what} config is invalid: {e}") from None
    check_state_dict(ckpt["state_dict"], expected_shapes(lambda: build(cfg)), what, path)
    model = build(cfg)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


# ---- identification (`dfwatch weights check`) ----------------------------------------------

def identify(path: str | Path, trust: bool = False) -> dict:
    """What a file is and whether it loads: {kind, parameters, loads, detail}."""
    if is_hdf5(path):
        try:
            net = load_mesonet(path)
        except CheckpointError as e:
            return {"kind": "unknown (HDF5)", "parameters": 0, "loads": False, "detail": str(e)}
        return {"kind": f"MesoNet {'Meso4' if net.architecture == 'meso4' else 'MesoInception4'} (Keras HDF5)",
                "parameters": sum(p.numel() for p in net.parameters()), "loads": True, "detail": ""}
    try:
        ckpt = read_checkpoint(path, trust)
    except CheckpointError as e:
        return {"kind": "unknown", "parameters": 0, "loads": False, "detail": str(e)}
    if isinstance(ckpt, Mapping) and ckpt.get("format") == HEAD_FORMAT:
        kind, loader = "StyleGRU head", load_head
        state_dict = ckpt.get("state_dict", {})
    elif isinstance(ckpt, Mapping) and ckpt.get("format") == DLDFD_FORMAT:
        kind, loader = "DLDFD model", load_dldfd
        state_dict = ckpt.get("state_dict", {})
    elif isinstance(ckpt, Mapping) and ckpt.get("format") == MESONET_FORMAT:
        kind, loader = "MesoNet model", load_mesonet
        state_dict = ckpt.get("state_dict", {})
    elif isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping) and \
            any(k.startswith("encoder.") for k in ckpt["state_dict"]):
        kind, loader = "pSp encoder", load_psp_encoder
        state_dict = strip_prefix(ckpt["state_dict"], "encoder.")
    else:
        try:
            state_dict = unwrap_state_dict(ckpt, ("model_state", "state_dict", "model"))
        except CheckpointError as e:
            return {"kind": "unknown", "parameters": 0, "loads": False, "detail": f"{path}: {e}"}
        if isinstance(ckpt, Mapping) and isinstance(ckpt.get("net"), Mapping):
            state_dict = dict(ckpt["net"])  # the ICPR 2020 detectors' layout
        if any(k.removeprefix("module.") == SLOW_R50_PROBE for k in state_dict):
            kind, loader = "slow_r50", load_slow_r50
        elif any(k.removeprefix("module.") == ICPR_PROBE for k in state_dict):
            kind = f"ICPR 2020 EfficientNet-B4{' with attention' if variant_of(state_dict) == 'b4att' else ''}"
            loader = load_icpr
        elif any(k.removeprefix("module.") == RESNET50_PROBE for k in state_dict):
            kind, loader = "ResNet-50 (torchvision, ImageNet)", load_resnet50_imagenet
        else:
            return {"kind": "unknown", "parameters": parameter_count(state_dict), "loads": False,
                    "detail": f"{path}: keys match no known model (first keys: {_summary(state_dict, 3)})"}
    params = parameter_count(state_dict)
    try:
        loader(path, trust=trust)
    except CheckpointError as e:
        return {"kind": kind, "parameters": params, "loads": False, "detail": str(e)}
    return {"kind": kind, "parameters": params, "loads": True, "detail": ""}


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
