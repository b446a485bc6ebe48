"""`dfwatch engines`: assemble, describe, export (ONNX) and build (TensorRT) model bundles."""
from __future__ import annotations

from engines.cli import common_options, not_yet


def register(sub) -> None:
    p = sub.add_parser("engines", help="model bundles: assemble, describe, export to ONNX, build TensorRT engines")
    esub = p.add_subparsers(dest="engines_command", required=True, metavar="ACTION")
    for name, text in [("bundle", "assemble a bundle from official checkpoints"),
                       ("info", "describe and validate a bundle"),
                       ("export", "export a bundle's models to ONNX"),
                       ("build", "build TensorRT engines for a bundle (needs an NVIDIA GPU)")]:
        c = esub.add_parser(name, parents=[common_options()], help=text)
        c.set_defaults(handler=not_yet(4, f"dfwatch engines {name}"))
