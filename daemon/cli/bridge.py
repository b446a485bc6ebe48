"""`dfwatch bridge KIND|configured`: the bridge processes (daemon/bridges/), one KIND per typed
bridge configuration (engines/config.py BRIDGE_CONFIGS), its options made from that class's fields."""
from __future__ import annotations

import argparse
import signal
import threading
from typing import Literal, get_args, get_origin

from engines.cli import common_options, setup


def register(sub) -> None:
    from engines.config import BRIDGE_CONFIGS

    p = sub.add_parser("bridge", help="carry alerts and stream states to " + " or ".join(BRIDGE_CONFIGS)
                                      + " (a subscriber process)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    parsers = []
    for kind, settings in BRIDGE_CONFIGS.items():
        k = kinds.add_parser(kind, parents=[common_options()], help=settings.__doc__.split("(")[0].strip())
        add_options(k, settings)
        parsers.append(k)
    c = kinds.add_parser("configured", parents=[common_options()],
                         help="the bridge listed at INDEX under bridges: in the configuration (what dfwatch run starts)")
    c.add_argument("index", type=int)
    for parser in (*parsers, c):
        parser.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
        parser.set_defaults(handler=_bridge)


def add_options(parser: argparse.ArgumentParser, settings) -> None:
    """One option per field of a bridge's typed configuration (engines/config.py), its description
    the help: a new bridge kind gets its command line from its configuration class alone."""
    for name, field in settings.model_fields.items():
        if name == "kind":
            continue
        flag, help_text = "--" + name.replace("_", "-"), field.description
        if field.annotation is bool:
            if field.default:
                parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", default=None,
                                    help=f"do not: {help_text}")
            else:
                parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
            continue
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else None
        default = "" if field.is_required() or field.default is None else f" (default {field.default})"
        parser.add_argument(flag, dest=name, required=field.is_required(), choices=choices,
                            type=field.annotation if field.annotation in (int, float) else str, metavar=None if choices else name.upper(),
                            help=f"{help_text}{default}")


def _settings(args: argparse.Namespace, config):
    """(name, typed bridge configuration) from `configured INDEX` or the command line's options,
    validated by the same classes as a `bridges:` entry (engines/config.py)."""
    from pydantic import TypeAdapter, ValidationError

    from engines.cli import UserError
    from engines.config import BRIDGE_CONFIGS, BridgeConfig

    if args.kind == "configured":
        if not 0 <= args.index < len(config.bridges):
            raise UserError(f"bridges has {len(config.bridges)} entries; there is no bridge {args.index}")
        bridge = config.bridges[args.index]
        return f"{args.index}-{bridge.kind}", bridge
    fields = {k: getattr(args, k) for k in BRIDGE_CONFIGS[args.kind].model_fields
              if k != "kind" and getattr(args, k, None) is not None}
    try:
        return args.kind, TypeAdapter(BridgeConfig).validate_python({"kind": args.kind, **fields})
    except ValidationError as e:
        raise UserError(e.errors()[0]["msg"].removeprefix("Value error, "), exit_code=2) from None


def _bridge(args: argparse.Namespace) -> int:
    from daemon.bridges import make_bridge, run_bridge
    from daemon.cli.common import subscriber_keys
    from daemon.wire.endpoints import resolve
    from engines.logs import bind

    config = setup(args, "bridge")
    name, settings = _settings(args, config)
    bind(role=f"bridge-{settings.kind}", bridge=name)  # the two kinds are told apart in the log
    bridge = make_bridge(settings, name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    endpoints = resolve(config.endpoints)
    endpoint = args.endpoint or endpoints.verdicts
    # the counters go to the inference process that publishes on `endpoint`: its frames endpoint
    stats = endpoints.frames if not args.endpoint else _frames_beside(args.endpoint)
    return run_bridge(bridge, endpoint, stop, subscriber_keys(config, endpoint), stats)


def _frames_beside(verdicts: str) -> str | None:
    """The frames endpoint next to a given ipc verdict endpoint (same runtime directory), if any."""
    if verdicts.startswith("ipc://") and verdicts.endswith("/verdicts"):
        return verdicts.removesuffix("verdicts") + "frames"
    return None
