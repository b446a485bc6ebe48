"""Editing a bundle's manifest in a test as dfwatch itself would write it (sealed by its digest)."""
from __future__ import annotations

import json
from pathlib import Path

from engines.families.writing import manifest_digest


def rewrite_manifest(root: Path, data: dict) -> None:
    """Writes `data` as root/manifest.json with a matching digest: a bundle another dfwatch made."""
    (Path(root) / "manifest.json").write_text(json.dumps({**data, "digest": manifest_digest(data)}))
