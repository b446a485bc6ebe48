"""`dfwatch engines triton-repo` (a Triton model repository from a bundle) and
`dfwatch serve-models` (a local Triton server over it)."""
from __future__ import annotations

import argparse

from engines.cli import common_options, setup


def _repo_options(p) -> None:
    p.add_argument("--instances", type=int, help="model instances per part (default triton.instances: 1)")
    p.add_argument("--max-batch", type=int, help="max_batch_size (default triton.max_batch: 32)")
    p.add_argument("--max-queue-delay-us", type=int, help="dynamic batching queue delay (default 2000)")


def register_repo(esub) -> None:
    p = esub.add_parser("triton-repo", parents=[common_options()],
                        help="write a Triton model repository from a bundle (one model per part)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--out", required=True, metavar="REPO")
    p.add_argument("--platform", choices=["python", "onnxruntime", "tensorrt"], default="python",
                   help="python: ONNX Runtime in Triton's Python backend (the pytriton wheel's server); "
                        "onnxruntime / tensorrt: NGC's tritonserver container (tensorrt: build on the GPU host)")
    _repo_options(p)
    p.set_defaults(handler=_triton_repo)


def register_serve(sub) -> None:
    p = sub.add_parser("serve-models", parents=[common_options()],
                       help="serve a bundle's models with a local Triton server (model.backend: triton)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--repository", metavar="DIR", help="where to write the model repository (default: a temporary one)")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads per model instance (default 1: instances x threads <= cores)")
    _repo_options(p)
    p.set_defaults(handler=_serve_models)


def _settings(args, config) -> dict:
    t = config.triton
    return {"instances": args.instances or t.instances, "max_batch": args.max_batch or t.max_batch,
            "queue_delay_us": t.max_queue_delay_us if args.max_queue_delay_us is None else args.max_queue_delay_us}


def _triton_repo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engines.backends.tensorrt import TensorRTSettings
    from engines.bundles.bundle import load_bundle
    from engines.triton.repository import write_repository

    config = setup(args, "engines")
    names = write_repository(load_bundle(args.bundle), Path(args.out), args.platform,
                             trt_settings=TensorRTSettings.from_config(config.tensorrt), **_settings(args, config))
    for name in names:
        print(f"{Path(args.out) / name}/config.pbtxt")
    return 0


def _serve_models(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from engines.bundles.bundle import load_bundle
    from engines.triton.server import serve

    config = setup(args, "serve-models")
    bundle = load_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="dfwatch-triton-") as tmp:
        repository = Path(args.repository) if args.repository else Path(tmp) / "models"
        return serve(bundle, repository, Path(tmp) / "work", args.bind, args.port, args.http_port, args.metrics_port,
                     threads=args.threads, **_settings(args, config))
