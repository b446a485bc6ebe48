"""The `dfwatch` command line: one console script, subcommands registered by each package.

Every package keeps a registry of its subcommands, a `COMMANDS` tuple of `Command` (name and the
function that adds its parser), published as one entry point of the `dfwatch.commands` group
(pyproject.toml: daemon, engines, training), so this module never imports daemon/ or training/
and `dfwatch --help` lists exactly what the registries hold, in their order.
Handlers take the parsed args and return an exit code; a `UserError` becomes one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from engines import __version__
from engines.config import ConfigError, load_config
from engines.errors import DfwatchError

PACKAGES = ("daemon", "engines", "training")  # whose commands `dfwatch --help` lists first to last
EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    """One `dfwatch` subcommand: its name and `register(subparsers)`, which adds its parser (and
    sets `handler`, a function of the parsed args that returns the exit code)."""
    name: str
    register: Callable


def commands() -> list[Command]:
    """Every subcommand of every package's registry, in order; a name registered twice is a bug."""
    eps = {ep.name: ep for ep in entry_points(group="dfwatch.commands")}
    found: list[Command] = []
    for package in sorted(eps, key=lambda n: (PACKAGES.index(n) if n in PACKAGES else len(PACKAGES), n)):
        found += eps[package].load()
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"a dfwatch subcommand is registered twice: {sorted(n for n in names if names.count(n) > 1)}")
    return found


class UserError(DfwatchError):
    """A problem the user can fix; the message is one line that says what and how."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def common_options(config: bool = True) -> argparse.ArgumentParser:
    """Options every subcommand accepts (argparse parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    if config:
        g.add_argument("--config", metavar="FILE", help="YAML configuration file (default: built-in defaults, "
                                                        "documented key by key in 'dfwatch config default')")
        g.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one configuration key (repeatable), e.g. --set window.stride=4")
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="log level (default: logging.level from the configuration)")
    g.add_argument("--log-format", choices=["auto", "console", "json"],
                   help="auto: console on a TTY, JSON lines otherwise")
    return p


def setup(args: argparse.Namespace, role: str):
    """Loads the effective configuration and configures logging for a process with this role."""
    from engines.logs import configure_logging

    config = load_config(getattr(args, "config", None), getattr(args, "overrides", []))
    configure_logging(role, args.log_level or config.logging.level,
                      args.log_format or config.logging.format)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfwatch",
        description="Streaming deepfake-video detector: capture processes push frames to one inference "
                    "process that publishes a verdict per 32-frame window on ZeroMQ.",
        epilog="Run 'dfwatch COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"dfwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands():
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    actions = [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    prog = " ".join(["dfwatch", args.command, *actions])
    try:
        return int(args.handler(args) or 0)
    except ConfigError as e:
        from engines.logs import report_error

        for line in e.problems:
            if not report_error(f"{prog}: configuration error: {line}"):
                print(f"{prog}: configuration error: {line}", file=sys.stderr)
        # `run` exits 78 (systemd's RestartPreventExitStatus): a configuration stays wrong until fixed
        return getattr(args, "config_error_exit", EXIT_USAGE)
    except DfwatchError as e:  # UserError, CheckpointError, BundleError, ...
        from engines.logs import report_error

        if not report_error(f"{prog}: {e}"):
            print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


