"""The shipped Prometheus rules and Grafana dashboard, checked against a daemon's real /metrics."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "configs" / "prometheus" / "dfwatch.rules.yml"
RULES_TEST = REPO / "configs" / "prometheus" / "dfwatch.rules.test.yml"
DASHBOARD = REPO / "configs" / "grafana" / "dfwatch.json"
NAME = re.compile(r"\b((?:dfwatch|process)_[a-z0-9_]+)\b")
NOT_OURS = {"up"}  # Prometheus's own series


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError("promtool is not installed: run scripts/setup.sh as root (Debian package prometheus)")
    return path


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    records = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    return [e for e in exprs if e not in records]


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names(metrics_text: str) -> set[str]:
    """Every series name the endpoint declares (a counter with no sample yet counts: no drops so far)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and line[0] != "#":
            names.add(line.split("{")[0].split(" ")[0])
    return names


def check_against(metrics_text: str) -> None:
    """promtool accepts the rules, their unit tests and the exposition; every series the rules and
    the dashboard query is one the daemon exposes (a renamed metric breaks this, not a dashboard)."""
    tool = promtool()
    for argv, stdin in (([tool, "check", "rules", str(RULES)], None), ([tool, "test", "rules", RULES_TEST.name], None),
                        ([tool, "check", "metrics"], metrics_text)):
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=RULES.parent, timeout=60)
        assert r.returncode == 0, f"{' '.join(argv[1:3])}: {r.stdout}{r.stderr}"
    exposed = exposed_names(metrics_text)
    used = {n for e in expressions() for n in NAME.findall(e)} - NOT_OURS
    recorded = {n for n in used if ":" in n}
    missing = sorted(n for n in used - recorded if n not in exposed)
    assert not missing, f"rules or dashboard query series /metrics does not expose: {missing}"
    assert len(used) >= 15  # the check reads the files (a parse that finds nothing proves nothing)
