"""NVIDIA Triton Inference Server: a bundle's parts served by Triton (repository.py), the bundled
server started locally (server.py); the daemon's client is engines/backends/triton_runner.py.
Torch-free: `dfwatch run` reads triton.url with `parse_url` to start a local server."""
from __future__ import annotations

from urllib.parse import urlparse

from engines.errors import DfwatchError


class TritonUrlError(DfwatchError):
    exit_code = 2


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of triton.url: grpc://HOST:PORT (the default scheme) or http://HOST:PORT."""
    parsed = urlparse(url if "://" in url else f"grpc://{url}")
    if parsed.scheme not in ("grpc", "http") or not parsed.hostname or not parsed.port:
        raise TritonUrlError(f"triton.url {url!r}: expected grpc://HOST:PORT or http://HOST:PORT")
    return parsed.scheme, parsed.hostname, parsed.port
