"""How the Triton backend addresses a server (`triton.url`) and names a bundle's models on it:
shared by the client (triton_runner.py) and the repository writer (engines/triton/repository.py).
`dfwatch run` reads triton.url with `parse_url` to start a local server (importing it loads
engines.backends, and so torch: the supervisor does it only for `triton.serve`)."""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from engines.errors import DfwatchError

if TYPE_CHECKING:
    from engines.bundles.bundle import Bundle


class TritonUrlError(DfwatchError):
    exit_code = 2


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of triton.url: grpc://HOST:PORT (the default scheme) or http://HOST:PORT."""
    parsed = urlparse(url if "://" in url else f"grpc://{url}")
    if parsed.scheme not in ("grpc", "http") or not parsed.hostname or not parsed.port:
        raise TritonUrlError(f"triton.url {url!r}: expected grpc://HOST:PORT or http://HOST:PORT")
    return parsed.scheme, parsed.hostname, parsed.port


def model_name(bundle: Bundle, part: str) -> str:
    """One bundle per server: the name says which part, the parameters say which bundle."""
    return f"{bundle.family}.{part}"
