"""The daemon's subcommands: one registry, in the order `dfwatch --help` lists them. Each command's
parser and handler live in the module of its room: service (run, capture, infer, keys, service),
clients (demo, scan, eval, calibrate, watch, health, web), bridge, bench, checks (config: the one check of a
configuration); `common` holds what they share."""
from __future__ import annotations

from daemon.cli import bench, bridge, checks, clients, service
from engines.cli import Command

COMMANDS = (
    Command("demo", clients.register_demo),
    Command("scan", clients.register_scan),
    Command("eval", clients.register_eval),
    Command("calibrate", clients.register_calibrate),
    Command("run", service.register_run),
    Command("capture", service.register_capture),
    Command("infer", service.register_infer),
    Command("watch", clients.register_watch),
    Command("health", clients.register_health),
    Command("bridge", bridge.register),
    Command("web", clients.register_web),
    Command("bench", bench.register),
    Command("keys", service.register_keys),
    Command("service", service.register_service),
    Command("config", checks.register_config),
)
