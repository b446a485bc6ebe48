"""What every daemon command shares: its configuration (--bundle, --stream applied), the bundle
it needs, the sources it checks first, the options a child process inherits, a subscriber's keys."""
from __future__ import annotations

import argparse
import os
import signal

from engines.cli import UserError, setup
from engines.sources import SOURCE_ENV


def stream_options(p) -> None:
    """--bundle and --stream, as run and capture take them."""
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.add_argument("--stream", metavar="NAME=SOURCE", action="append", default=[], dest="streams",
                   help="add a stream (repeatable); SOURCE is a URL, a file path or a webcam index")


def daemon_config(args: argparse.Namespace, role: str):
    """Configuration with the command line's --bundle and --stream applied; logging set up."""
    from engines.config import with_streams

    config = setup(args, role)
    if getattr(args, "bundle", None):
        config = config.model_copy(update={"model": config.model.model_copy(update={"bundle": args.bundle})})
    specs = [s for s in getattr(args, "streams", []) if "=" in s]
    if role == "capture" and os.environ.get(SOURCE_ENV) and len(args.streams) == 1 and "=" not in args.streams[0]:
        specs = [f"{args.streams[0]}={os.environ[SOURCE_ENV]}"]  # from `dfwatch run`: not on the command line
    return with_streams(config, specs) if specs else config


def usage_error(load):
    """`load()`, with a bundle that cannot be used reported as bad usage (exit 2), as scan's codes say
    (exit 1 means 'fake' there)."""
    from engines.errors import DfwatchError

    try:
        return load()
    except DfwatchError as e:
        raise UserError(str(e), exit_code=2) from None


def require_bundle(config) -> str:
    if not config.model.bundle:
        raise UserError("no model bundle: pass --bundle DIR or set model.bundle (make one with "
                        "'dfwatch engines bundle', or try 'dfwatch demo')")
    from engines.bundles.manifest import read_manifest

    read_manifest(config.model.bundle)  # a clear error now rather than in a child
    return config.model.bundle


def config_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the configuration as it is now (a reload checks it first: the same
    check as `dfwatch run`'s start and `config check`), or None."""
    from daemon.cli.checks import config_problems
    from engines.config import ConfigError, load_config, with_streams

    try:
        config = load_config(args.config, args.overrides)
        specs = [s for s in args.streams if "=" in s]
        config = with_streams(config, specs) if specs else config
        if args.bundle:
            config = config.model_copy(update={"model": config.model.model_copy(update={"bundle": args.bundle})})
    except ConfigError as e:
        return "; ".join(e.problems)
    return "; ".join(config_problems(config, need_bundle=True)) or None


def subscriber_keys(config, endpoint: str):
    """The CURVE keys a subscriber of `endpoint` presents (None for ipc, or insecure tcp)."""
    from daemon.wire.curve import client_keys_for

    return client_keys_for(endpoint, config.endpoints, config.endpoints.subscriber_key)


def on_stop(callback) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: callback())


def passthrough(args: argparse.Namespace) -> list[str]:
    """Command-line options a child process must see as well."""
    out = []
    if args.config:
        out += ["--config", args.config]
    for item in args.overrides:
        out += ["--set", item]
    if args.log_level:
        out += ["--log-level", args.log_level]
    if args.log_format:
        out += ["--log-format", args.log_format]
    return out
