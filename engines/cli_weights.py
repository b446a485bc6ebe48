"""`dfwatch weights`: inspect checkpoint files and list where the official weights come from."""
from __future__ import annotations

from engines.cli import common_options, not_yet


def register(sub) -> None:
    p = sub.add_parser("weights", help="inspect checkpoint files; where to download the official weights")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    c = wsub.add_parser("check", parents=[common_options(config=False)],
                        help="say what a checkpoint file is, its parameter count and whether it loads")
    c.add_argument("file")
    c.set_defaults(handler=not_yet(3, "dfwatch weights check"))
    s = wsub.add_parser("sources", parents=[common_options(config=False)],
                        help="where to download each official weight file, and its licence")
    s.set_defaults(handler=not_yet(3, "dfwatch weights sources"))
