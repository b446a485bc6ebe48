"""How the Triton backend addresses a server (`triton.url`) and names a bundle's models on it:
shared by the client (triton_runner.py) and the repository writer (engines/triton/repository.py).
What the URL means is engines/config.py's `parse_triton_url` (torch-free: the supervisor reads it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engines.config import parse_triton_url
from engines.errors import DfwatchError

if TYPE_CHECKING:
    from engines.bundles.bundle import Bundle


class TritonUrlError(DfwatchError):
    exit_code = 2


def parse_url(url: str) -> tuple[str, str, int]:
    """`parse_triton_url`, for a URL that may not have come through the configuration (a benchmark's
    server): a wrong one is a DfwatchError (exit 2), one line."""
    try:
        return parse_triton_url(url)
    except ValueError as e:
        raise TritonUrlError(f"triton.url {e}") from None


def model_name(bundle: Bundle, part: str) -> str:
    """One bundle per server: the name says which part, the parameters say which bundle."""
    return f"{bundle.family}.{part}"
