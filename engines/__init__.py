"""dfwatch engines: everything the daemon and training share (docs/ARCHITECTURE.md).

  families/   what each model family is (the registry)     models/    the architectures
  bundles/    manifests, bundles, checkpoints, ONNX export  backends/  torch, ONNX Runtime, TensorRT
  pipeline/   preprocessing, per-stream analysis, decisions benchmarks/ measuring helpers
  cli/        the `dfwatch` entry point; config.py the configuration schema; logs.py logging
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfwatch")  # one place: pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
