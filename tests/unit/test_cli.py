"""The `dfwatch` console script: every subcommand answers --help; logging carries role/stream."""
from __future__ import annotations

import io
import json
import subprocess

import pytest

from conftest import DFWATCH, REPO
from engines.cli import PACKAGES, build_parser, commands, main
from engines.logs import bind, configure_logging, get_logger

SUBCOMMANDS = [c.name for c in commands()]  # every package's registry (engines.cli.commands())


def test_console_script_lists_every_subcommand():
    """--help names every registered subcommand (the complete list), each once, in registry order."""
    r = subprocess.run([str(REPO / ".venv" / "bin" / "dfwatch"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.split("positional arguments:")[1].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert listed == SUBCOMMANDS
    assert {"run", "capture", "infer", "watch", "health", "bridge", "weights", "engines", "train", "bench", "config",
            "keys", "scan", "web", "demo", "serve-models", "service"} <= set(listed)


@pytest.mark.parametrize("argv", [[s, "--help"] for s in SUBCOMMANDS] +
                         [["config", "check", "--help"], ["weights", "check", "--help"],
                          ["engines", "build", "--help"], ["train", "fit", "--help"]])
def test_every_subcommand_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: dfwatch" in capsys.readouterr().out


def test_every_package_registers_its_commands_and_only_those():
    """One entry point per package, each a registry of Commands whose registers live in that package."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="dfwatch.commands")}
    assert sorted(eps) == sorted(PACKAGES)
    for package, ep in eps.items():
        assert all(c.register.__module__.split(".")[0] == package for c in ep.load()), package
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == SUBCOMMANDS


def test_unknown_subcommand_is_a_usage_error():
    r = subprocess.run(DFWATCH + ["frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice: 'frobnicate'" in r.stderr


def test_json_log_lines_carry_role_and_stream():
    out = io.StringIO()
    configure_logging("capture", "info", "auto", stream=out)  # StringIO is not a TTY -> JSON
    bind(stream="door")
    get_logger().info("opened", source="rtsp://x")
    get_logger().debug("hidden at info level")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["role"] == "capture" and lines[0]["stream"] == "door"
    assert lines[0]["event"] == "opened" and lines[0]["level"] == "info" and "timestamp" in lines[0]


def test_console_format_on_request():
    out = io.StringIO()
    configure_logging("infer", "debug", "console", stream=out)
    get_logger().debug("hello", n=1)
    text = out.getvalue()
    assert "hello" in text and "role" in text and not text.lstrip().startswith("{")
