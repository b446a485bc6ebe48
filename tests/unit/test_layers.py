"""The structure the code promises (docs/ARCHITECTURE.md), checked on the source itself:
daemon/ and training/ never import each other, the rooms inside engines/ and daemon/ import one
way (no circle), each daemon room imports only the rooms below it, capture hosts never load
torch, and no code outside the family registry branches on a family's name."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from engines.families import FAMILIES

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("daemon", "engines", "training")
# Where a family's name may be written as a string: the registry and the families' own modules;
# protocol.py keeps the wire format's default for messages from before `family` existed.
FAMILY_NAME_HOMES = {"engines/families", "daemon/wire/protocol.py"}


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


def room_graph(package: str) -> dict[str, set[str]]:
    """room -> the other rooms of `package` it imports; a room is a sub-folder or a top-level module."""
    graph: dict[str, set[str]] = {}
    for path in sources(package):
        parts = path.relative_to(REPO / package).parts
        room = parts[0].removesuffix(".py")
        if room == "__init__":
            continue
        for name in imported_modules(path):   # a type-only import counts: a reader must hold it too
            words = name.split(".")
            if words[0] == package and len(words) > 1 and words[1] != room:
                graph.setdefault(room, set()).add(words[1])
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the path that closes it (depth-first search)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_rooms_import_one_way(package):
    """No circle between the folders of a package (engines: backends/triton, bundles/families and
    families/pipeline each import one way)."""
    assert not circles(room_graph(package)), "\n".join(" -> ".join(c) for c in circles(room_graph(package)))


def test_the_circle_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_engines_folders_import_in_the_documented_direction():
    graph = room_graph("engines")
    assert "triton" not in graph.get("backends", set())       # the server side builds on the client's naming
    assert "bundles" not in graph.get("families", set())      # bundles read through the family registry
    assert not {"families", "bundles"} & graph.get("pipeline", set())  # families decide on the pipeline's inputs


# Each room of daemon/ and the rooms it may import (docs/ARCHITECTURE.md); engines/ is open to all.
DAEMON_ROOMS = {
    "wire": set(),
    "outcomes": {"wire"},
    "service": {"wire", "outcomes"},
    "bridges": {"wire"},
    "clients": {"wire", "outcomes", "service"},
    "benchmarks": {"wire", "outcomes", "service", "clients"},
    "cli": {"wire", "outcomes", "service", "bridges", "clients", "benchmarks"},
}


def test_every_daemon_module_lives_in_a_room():
    loose = [p.name for p in (REPO / "daemon").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"daemon/ modules outside a room: {loose}"
    assert {p.name for p in (REPO / "daemon").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(DAEMON_ROOMS)


def test_daemon_rooms_import_only_the_rooms_below_them():
    offenders = [f"daemon/{room} imports daemon/{other}" for room, others in room_graph("daemon").items()
                 for other in others - DAEMON_ROOMS[room]]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package,forbidden", [("daemon", "training"), ("training", "daemon"),
                                               ("engines", "daemon"), ("engines", "training")])
def test_packages_do_not_import_across_layers(package, forbidden):
    offenders = [f"{path.relative_to(REPO)} imports {name}" for path in sources(package)
                 for name in imported_modules(path) if name == forbidden or name.startswith(forbidden + ".")]
    assert not offenders, "\n".join(offenders)


def test_capture_and_manifest_reading_do_not_load_torch():
    """A capture host runs `dfwatch capture` and reads manifests (the analysis rate) without torch."""
    code = ("import sys; import daemon.service.capture, daemon.service.supervisor, daemon.cli, engines.bundles.manifest, "
            "engines.cli.registry, training.cli, "
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


def test_test_modules_have_unique_names():
    """pytest imports tests/unit and tests/e2e modules by their base name: two files with one name
    stop the whole run at collection (it happened: keep the names apart)."""
    from collections import Counter

    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert not [n for n, count in names.items() if count > 1]
