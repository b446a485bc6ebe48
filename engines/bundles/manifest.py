"""Reading, checking and writing a bundle's manifest.json, without torch.

Capture processes and the supervisor only need a few manifest fields (the analysis frame rate,
the bundle id) and must start in about a second, so this module imports nothing heavy;
engines/bundles/bundle.py builds on it. The schema is engines/families/schema.py plus each
family's sections (engines/families/); writing one is engines/families/writing.py, which the
families use to assemble bundles (they never import this folder: bundles read through them).
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from engines import __version__
from engines.checksums import sha256_file
from engines.errors import BundleError
from engines.families import FAMILIES, MANIFEST_ADAPTER
from engines.families.schema import FORMAT, FORMAT_VERSION, ManifestBase
from engines.families.writing import MANIFEST, manifest_digest

def read_manifest(root: str | Path) -> ManifestBase:
    """The typed manifest after checking format, version, family and fields (not the files)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        hint = "no such directory" if not root.exists() else f"no {MANIFEST} in it"
        raise BundleError(f"{root}: not a model bundle ({hint}); create one with 'dfwatch engines bundle' "
                          "or 'dfwatch demo'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e}); re-create the bundle") from None
    return parse_manifest(data, path)


def parse_manifest(data: object, path: Path) -> ManifestBase:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path}: not a dfwatch bundle manifest (format is not '{FORMAT}')")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version} is newer than this dfwatch "
                          f"({__version__}) reads ({FORMAT_VERSION}); upgrade dfwatch or re-create the bundle")
    _check_digest(data, path)
    family = FAMILIES.get(data.get("family"))
    if family is None:
        raise BundleError(f"{path}: model family {data.get('family')!r} is unknown to this dfwatch ({__version__} "
                          f"serves {', '.join(FAMILIES)}); upgrade dfwatch")
    required = [name for name, f in family.manifest_type.model_fields.items() if f.is_required()]
    missing = [name for name in required if name not in data]
    if missing:
        raise BundleError(f"{path}: manifest lacks required fields: {', '.join(missing)}; re-create the bundle")
    for part in family.part_names:
        if part not in data["files"]:
            raise BundleError(f"{path}: manifest lists no '{part}' file; re-create the bundle")
    try:
        return MANIFEST_ADAPTER.validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"][1:]) or "manifest"  # loc[0] is the family tag
        raise BundleError(f"{path}: manifest field {where}: {first['msg']}; re-create the bundle") from None


def _check_digest(data: dict, path: Path) -> None:
    """A manifest edited by hand (trained, threshold, id, a file's checksum) is refused as itself,
    before its files are checked. Manifests of dfwatch 0.2 have no digest: they load with a warning."""
    digest = data.get("digest")
    if digest is None:
        from engines.logs import get_logger

        get_logger().warning("bundle manifest has no digest (made before dfwatch 0.3): edits to it go unnoticed; "
                             "re-create the bundle to seal it", manifest=str(path))
    elif digest != manifest_digest(data):
        raise BundleError(f"{path}: edited since the bundle was made (its digest does not match its content); "
                          "re-create the bundle rather than editing manifest.json")


def verify_file(root: Path, part: str, entry) -> None:
    path = root / entry.path
    if not path.is_file():
        raise BundleError(f"{path}: missing ({part} file of the bundle); re-create the bundle "
                          "('dfwatch engines bundle', or 'dfwatch engines export' for ONNX files)")
    if sha256_file(path) != entry.sha256:
        raise BundleError(f"{path}: modified since the bundle was made (sha256 differs from the manifest); "
                          "re-create the bundle rather than editing its files")
