"""Structured logging for every dfwatch process (structlog).

JSON lines when stderr is not a TTY (systemd/journald, files, pipes), readable console lines on a
TTY. Written to the journal, each JSON line starts with its syslog priority (`<4>{...}`), so
`journalctl -p warning` filters dfwatch's lines. Every line, from any thread, carries the process
`role` (capture, infer, run, train, bridge-mqtt, ...) and, where bound, the `stream` name: call
`bind(stream=...)` once per process.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# syslog priorities: journald reads a "<N>" line prefix as the line's priority (journalctl -p warning)
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_format: str | None = None  # "json" or "console" once configure_logging ran in this process
_role: str | None = None
# Processes that run as services (under `dfwatch run` or systemd): their final error is a log line
# too. One-shot tools (engines, train, scan, bench, ...) print it as a plain line for the person.
SERVICE_ROLES = ("run", "infer", "capture", "web", "serve-models", "bridge")


def to_journal(stream) -> bool:
    """The stream is systemd's journal: $JOURNAL_STREAM names its device:inode (systemd.exec(5))."""
    expected = os.environ.get("JOURNAL_STREAM")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(expected) and expected == f"{st.st_dev}:{st.st_ino}"


def _with_priority(renderer):
    def render(logger, method, event_dict):
        return f"<{PRIORITIES.get(event_dict.get('level', 'info'), 6)}>" + renderer(logger, method, event_dict)
    return render


def configure_logging(role: str, level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Sets up structlog for this process; `role` is stamped on every line."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=True) if fmt == "console"
                else structlog.processors.JSONRenderer(sort_keys=False))
    if fmt == "json" and to_journal(stream):
        renderer = _with_priority(renderer)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    _PROCESS.clear()
    structlog.configure(
        processors=[
            _merge_process_fields,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _PROCESS["role"] = role
    global _format, _role
    _format, _role = fmt, role
    if fmt == "json":  # a crash is one JSON line too, not a traceback amid the JSON stream
        sys.excepthook = _log_uncaught


def _log_uncaught(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt):
        return sys.__excepthook__(kind, value, tb)
    get_logger().critical("uncaught exception", exc_info=(kind, value, tb))


def report_error(message: str) -> bool:
    """Logs a command's final error as one structured line when this process is a service that
    logs JSON (`dfwatch run` and its children): True if it did; the caller prints it otherwise."""
    if _format != "json" or not (_role or "").startswith(SERVICE_ROLES):
        return False
    get_logger().error(message)
    return True


_PROCESS: dict = {}  # fields of every line of this process, from every thread (role, stream)


def _merge_process_fields(logger, method, event_dict):
    """The process's fields under each line's own: a context variable would not reach the lines
    of threads (capture watchdog, CURVE authenticator, evidence writer, MQTT callbacks, webhook worker)."""
    for key, value in _PROCESS.items():
        event_dict.setdefault(key, value)
    return event_dict


def bind(**fields) -> None:
    """Adds fields (e.g. stream=NAME) to every following log line of this process, in every thread."""
    _PROCESS.update(fields)
    if "role" in fields:
        global _role
        _role = fields["role"]


def get_logger(name: str | None = None):
    return structlog.get_logger(name) if name else structlog.get_logger()


class Throttle:
    """At most one log line per `seconds` per key: a fault that repeats on every message or call
    (a flood of bad frames, a model server that is down) must not flood the log."""

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self.last: dict[str, float] = {}

    def ready(self, key: str = "") -> bool:
        now = time.monotonic()
        if now - self.last.get(key, float("-inf")) > self.seconds:
            self.last[key] = now
            return True
        return False
