"""Writing a bundle: its folder, the file entries (path, sha256, size) and manifest.json sealed by
its digest. The families assemble their bundles with these (begin_bundle, write the part files,
finish_bundle); engines/bundles/ reads them back through the family registry. Torch-free."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engines import __version__
from engines.checksums import sha256_file
from engines.families.schema import FORMAT, FORMAT_VERSION, ManifestBase

if TYPE_CHECKING:
    from engines.families.base import Family

MANIFEST = "manifest.json"


def file_entry(root: Path, relpath: str) -> dict:
    path = root / relpath
    return {"path": relpath, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def manifest_digest(data: dict) -> str:
    """sha256 over the manifest's content (every field but `digest`, keys sorted). The manifest
    lists every file's sha256, so the digest covers the whole bundle: it is the bundle's checksum."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(root: Path, manifest: ManifestBase) -> None:
    """Writes manifest.json atomically (a reader never sees half a file), sealed by its digest."""
    data = manifest.as_json()
    data["digest"] = manifest_digest(data)
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(root / MANIFEST)


def begin_bundle(out: str | Path) -> Path:
    """The bundle folder, without a manifest until `finish_bundle`: a half-written bundle never validates."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def finish_bundle(family: Family, out: Path, trained: bool, bundle_id: str | None, **fields) -> Path:
    """Records the family's part files (written by the caller) with their checksums and writes
    the manifest; the id defaults to family, state and the trained part's checksum. Returns the
    folder: `engines.bundles.bundle.load_bundle` reads (and checks) it."""
    files = {part: file_entry(out, family.part(part).file) for part in family.part_names}
    state = "trained" if trained else "untrained"
    manifest = family.manifest_type(
        format=FORMAT, format_version=FORMAT_VERSION, family=family.name, trained=trained,
        id=bundle_id or f"{family.name}-{state}-{files[family.trained_part]['sha256'][:8]}",
        created_at=now(), code_version=__version__, files=files, **fields)
    write_manifest(out, manifest)
    return out
