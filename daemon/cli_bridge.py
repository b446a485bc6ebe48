"""`dfwatch bridge mqtt|webhook|configured`: the bridge processes (daemon/bridges/)."""
from __future__ import annotations

import argparse
import signal
import threading

from engines.cli import common_options, setup


def register(sub) -> None:
    p = sub.add_parser("bridge", help="carry alerts and stream states to MQTT or a webhook (a subscriber process)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    m = kinds.add_parser("mqtt", parents=[common_options()], help="publish alerts and states to an MQTT broker "
                                                                   "(Home Assistant discovery included)")
    m.add_argument("--broker", required=True, metavar="mqtt://HOST:PORT", help="mqtts://HOST:PORT for TLS")
    m.add_argument("--prefix", default="dfwatch", help="topic prefix (default dfwatch)")
    m.add_argument("--username")
    m.add_argument("--password-file", metavar="FILE", help="the broker password, read from a file")
    m.add_argument("--verdicts", action="store_true", help="also publish every verdict (<prefix>/<stream>/verdict)")
    m.add_argument("--ca-file", metavar="FILE", help="mqtts: CA certificate(s) that sign the broker's")
    m.add_argument("--cert-file", metavar="FILE", help="mqtts: client certificate (with --key-file)")
    m.add_argument("--key-file", metavar="FILE", help="mqtts: client key")
    m.add_argument("--no-discovery", action="store_false", dest="discovery",
                   help="no Home Assistant MQTT discovery messages")
    w = kinds.add_parser("webhook", parents=[common_options()], help="POST each alert as JSON to a URL")
    w.add_argument("--url", required=True)
    w.add_argument("--secret-file", metavar="FILE", help="signing key: webhook-signature (Standard Webhooks) "
                                                         "and X-Dfwatch-Signature headers")
    w.add_argument("--events", choices=["all", "start_end"], default="all",
                   help="start_end: only each alert's start and end (default all: updates too)")
    c = kinds.add_parser("configured", parents=[common_options()],
                         help="the bridge listed at INDEX under bridges: in the configuration (what dfwatch run starts)")
    c.add_argument("index", type=int)
    for parser in (m, w, c):
        parser.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
        parser.set_defaults(handler=_bridge)


def _settings(args: argparse.Namespace, config):
    """(name, typed bridge configuration) from `configured INDEX` or the command line's options,
    validated by the same classes as a `bridges:` entry (engines/config.py)."""
    from pydantic import TypeAdapter, ValidationError

    from engines.cli import UserError
    from engines.config import BridgeConfig

    if args.kind == "configured":
        if not 0 <= args.index < len(config.bridges):
            raise UserError(f"bridges has {len(config.bridges)} entries; there is no bridge {args.index}")
        bridge = config.bridges[args.index]
        return f"{args.index}-{bridge.kind}", bridge
    fields = {k: v for k, v in vars(args).items() if k in ("broker", "prefix", "username", "password_file", "verdicts",
                                                           "ca_file", "cert_file", "key_file", "discovery", "url",
                                                           "secret_file", "events") and v is not None}
    try:
        return args.kind, TypeAdapter(BridgeConfig).validate_python({"kind": args.kind, **fields})
    except ValidationError as e:
        raise UserError(e.errors()[0]["msg"].removeprefix("Value error, "), exit_code=2) from None


def _bridge(args: argparse.Namespace) -> int:
    from daemon.bridges import make_bridge, run_bridge
    from daemon.cli import subscriber_keys
    from daemon.endpoints import resolve
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
