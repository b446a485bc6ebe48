"""`dfwatch bridge mqtt|webhook|configured`: the bridge processes (daemon/bridges.py)."""
from __future__ import annotations

import argparse
import signal
import threading

from engines.cli import common_options, setup


def register(sub) -> None:
    p = sub.add_parser("bridge", help="carry alerts and stream states to MQTT or a webhook (a subscriber process)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    m = kinds.add_parser("mqtt", parents=[common_options()], help="publish alerts and states to an MQTT broker")
    m.add_argument("--broker", required=True, metavar="mqtt://HOST:PORT")
    m.add_argument("--prefix", default="dfwatch", help="topic prefix (default dfwatch)")
    m.add_argument("--username")
    m.add_argument("--password-file", metavar="FILE", help="the broker password, read from a file")
    m.add_argument("--verdicts", action="store_true", help="also publish every verdict (<prefix>/<stream>/verdict)")
    w = kinds.add_parser("webhook", parents=[common_options()], help="POST each alert as JSON to a URL")
    w.add_argument("--url", required=True)
    w.add_argument("--secret-file", metavar="FILE", help="HMAC-SHA256 key for the X-Dfwatch-Signature header")
    c = kinds.add_parser("configured", parents=[common_options()],
                         help="the bridge listed at INDEX under bridges: in the configuration (what dfwatch run starts)")
    c.add_argument("index", type=int)
    for parser in (m, w, c):
        parser.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
        parser.set_defaults(handler=_bridge)


def make_bridge(settings: dict):
    """A bridge from its settings (a `bridges:` entry, or the command line's options)."""
    from daemon.bridges import MqttBridge, WebhookBridge, read_secret

    if settings["kind"] == "mqtt":
        return MqttBridge(settings["broker"], settings.get("prefix") or "dfwatch", settings.get("username"),
                          read_secret(settings.get("password_file")), bool(settings.get("verdicts")))
    return WebhookBridge(settings["url"], read_secret(settings.get("secret_file")),
                         settings.get("queue") or 100)


def _bridge(args: argparse.Namespace) -> int:
    from daemon.bridges import BridgeError, run_bridge
    from daemon.cli import subscriber_keys
    from daemon.endpoints import resolve
    from engines.cli import UserError

    config = setup(args, f"bridge-{args.kind}")
    if args.kind == "configured":
        if not 0 <= args.index < len(config.bridges):
            raise UserError(f"bridges has {len(config.bridges)} entries; there is no bridge {args.index}")
        settings = config.bridges[args.index].model_dump()
    else:
        settings = {k: v for k, v in vars(args).items() if k in ("kind", "broker", "prefix", "username",
                                                                  "password_file", "verdicts", "url", "secret_file")}
    try:
        bridge = make_bridge(settings)
    except BridgeError as e:
        raise UserError(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    return run_bridge(bridge, endpoint, stop, subscriber_keys(config, endpoint))
