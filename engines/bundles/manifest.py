"""Reading and checking a bundle's manifest.json without torch.

Capture processes and the supervisor only need a few manifest fields (the analysis frame rate,
the bundle id) and must start in about a second, so this module imports nothing heavy;
engines/bundles/bundle.py builds on it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engines import __version__
from engines.errors import DfwatchError

MANIFEST = "manifest.json"
FORMAT = "dfwatch-bundle"
FORMAT_VERSION = 1
# model family -> the bundle's parts (each a file, an ONNX file and a runner)
FAMILY_PARTS = {
    "stylegru": ("style", "content", "head"),  # pSp style codes + 3D ResNet-50 clips -> StyleGRU head
    "dldfd": ("frame",),                       # one P(fake) per face; majority vote per window
}
REQUIRED = ("format", "format_version", "id", "created_at", "code_version", "family", "trained", "window",
            "threshold", "crop", "files")


class BundleError(DfwatchError):
    """A bundle that cannot be used; the message names the file and how to fix it."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: str | Path) -> dict:
    """The parsed manifest after checking format, version and required fields (not the files)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        hint = "no such directory" if not root.exists() else f"no {MANIFEST} in it"
        raise BundleError(f"{root}: not a model bundle ({hint}); create one with 'dfwatch engines bundle' "
                          "or 'dfwatch demo'")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e}); re-create the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a dfwatch bundle manifest (format is not '{FORMAT}')")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version} is newer than this dfwatch "
                          f"({__version__}) reads ({FORMAT_VERSION}); upgrade dfwatch or re-create the bundle")
    family = manifest.get("family")
    if family not in FAMILY_PARTS:
        raise BundleError(f"{path}: model family {family!r} is unknown to this dfwatch ({__version__} serves "
                          f"{', '.join(FAMILY_PARTS)}); upgrade dfwatch")
    missing = [k for k in REQUIRED + FAMILY_PARTS[family] if k not in manifest]
    if missing:
        raise BundleError(f"{path}: manifest lacks required fields: {', '.join(missing)}; re-create the bundle")
    for part in FAMILY_PARTS[family]:
        if part not in manifest["files"]:
            raise BundleError(f"{path}: manifest lists no '{part}' file; re-create the bundle")
    return manifest


def verify_file(root: Path, part: str, entry: dict) -> None:
    path = root / entry["path"]
    if not path.is_file():
        raise BundleError(f"{path}: missing ({part} file of the bundle); re-create the bundle "
                          "('dfwatch engines bundle', or 'dfwatch engines export' for ONNX files)")
    if sha256_file(path) != entry["sha256"]:
        raise BundleError(f"{path}: modified since the bundle was made (sha256 differs from the manifest); "
                          "re-create the bundle rather than editing its files")
