"""The structure the code promises (docs/ARCHITECTURE.md), checked on the source itself:
daemon/ and training/ never import each other, capture hosts never load torch, and no code
outside the family registry branches on a family's name."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from engines.families import FAMILIES

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "engines", "training")
# Where a family's name may be written as a string: the registry and the families' own modules;
# protocol.py keeps the wire format's default for messages from before `family` existed.
FAMILY_NAME_HOMES = {"engines/families", "daemon/protocol.py"}


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package,forbidden", [("daemon", "training"), ("training", "daemon"),
                                               ("engines", "daemon"), ("engines", "training")])
def test_packages_do_not_import_across_layers(package, forbidden):
    offenders = [f"{path.relative_to(REPO)} imports {name}" for path in sources(package)
                 for name in imported_modules(path) if name == forbidden or name.startswith(forbidden + ".")]
    assert not offenders, "\n".join(offenders)


def test_capture_and_manifest_reading_do_not_load_torch():
    """A capture host runs `dfwatch capture` and reads manifests (the analysis rate) without torch."""
    code = ("import sys; import daemon.capture, daemon.supervisor, daemon.cli, engines.bundles.manifest, "
            "engines.families, engines.cli; from engines.bundles.manifest import read_manifest; "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'onnxruntime', 'facenet_pytorch') if m in sys.modules); "
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"loaded on a capture host: {r.stdout.strip()}"


def family_name_literals(path: Path) -> list[str]:
    names = set(FAMILIES)
    return [f"{path}:{node.lineno}: {node.value!r}"
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Constant) and node.value in names]


def test_family_names_are_written_only_in_the_registry():
    """Adding a family is one module in engines/families/: nothing else tests a family's name."""
    offenders = []
    for package in PACKAGES:
        for path in sources(package):
            rel = path.relative_to(REPO).as_posix()
            if not any(rel == home or rel.startswith(home + "/") for home in FAMILY_NAME_HOMES):
                offenders += family_name_literals(path)
    assert not offenders, "family names outside engines/families:\n" + "\n".join(offenders)


def test_the_check_sees_a_family_name(tmp_path):
    """The check itself: a branch on a family's name is found."""
    name = next(iter(FAMILIES))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def f(bundle):\n    return 1 if bundle.family == {name!r} else 2\n")
    assert family_name_literals(probe) == [f"{probe}:2: {name!r}"]
