"""`dfwatch run | capture | infer | watch | demo | bench`: the daemon's commands."""
from __future__ import annotations

from engines.cli import common_options, not_yet


def _stream_options(p) -> None:
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.add_argument("--stream", metavar="NAME=SOURCE", action="append", default=[], dest="streams",
                   help="add a stream (repeatable); SOURCE is a URL, a file path or a webcam index")


def register_run(sub) -> None:
    p = sub.add_parser("run", parents=[common_options()],
                       help="supervise the inference process and one capture process per stream")
    _stream_options(p)
    p.set_defaults(handler=not_yet(5, "dfwatch run"))


def register_capture(sub) -> None:
    p = sub.add_parser("capture", parents=[common_options()],
                       help="read one stream and push its frames to the inference process")
    _stream_options(p)
    p.set_defaults(handler=not_yet(5, "dfwatch capture"))


def register_infer(sub) -> None:
    p = sub.add_parser("infer", parents=[common_options()],
                       help="the inference process: rolling windows, models, verdicts on PUB")
    _stream_options(p)
    p.set_defaults(handler=not_yet(5, "dfwatch infer"))


def register_watch(sub) -> None:
    p = sub.add_parser("watch", parents=[common_options()], help="subscribe and print verdicts")
    p.add_argument("--stream", help="only this stream")
    p.add_argument("--json", action="store_true", help="JSON lines even on a TTY")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.set_defaults(handler=not_yet(5, "dfwatch watch"))


def register_demo(sub) -> None:
    p = sub.add_parser("demo", parents=[common_options()],
                       help="run the daemon on sample footage with a demo bundle (no weights needed)")
    p.set_defaults(handler=not_yet(5, "dfwatch demo"))


def register_bench(sub) -> None:
    p = sub.add_parser("bench", parents=[common_options()],
                       help="measure per-stage and end-to-end throughput against this machine's limits")
    p.add_argument("--quick", action="store_true", help="a run under 3 minutes")
    p.set_defaults(handler=not_yet(7, "dfwatch bench"))
