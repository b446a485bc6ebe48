"""`dfwatch train`: extract features, fit the head, evaluate, export a bundle."""
from __future__ import annotations

from engines.cli import common_options, not_yet


def register(sub) -> None:
    p = sub.add_parser("train", help="offline training: extract features, fit, evaluate, export a bundle")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="STEP")
    for name, text in [("extract", "sample frames, crop faces, cache style and content features per video"),
                       ("fit", "train the head on cached features"),
                       ("eval", "evaluate a trained head on a dataset split (metrics, plots, JSON report)"),
                       ("export", "write a bundle the daemon loads")]:
        c = tsub.add_parser(name, parents=[common_options()], help=text)
        c.set_defaults(handler=not_yet(6, f"dfwatch train {name}"))
