"""Secret files (an MQTT password, a webhook key, the dashboard token, a TLS client key): read
once, refused with one line when they cannot be trusted.

A secret lives in a file, never on a command line (every local user can read /proc/*/cmdline).
Like ssh with a private key, dfwatch refuses a secret file that every local user may read
(mode o+r): group read stays allowed, since the service reads its secrets as group dfwatch
(/etc/dfwatch is root:dfwatch 0640). The configuration checks these files when it loads, so
`dfwatch config check` fails on them, not the process that needs them five restarts later.
"""
from __future__ import annotations

import stat
from pathlib import Path

from engines.errors import DfwatchError


class SecretError(DfwatchError):
    pass


def check_secret_file(path: str | Path, what: str, min_length: int = 1) -> str:
    """The secret in `path` (stripped), or SecretError saying what is wrong and how to fix it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"cannot read the {what} file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(mode):
        raise SecretError(f"{what} file {path} is not a regular file")
    if mode & stat.S_IROTH:
        raise SecretError(f"{what} file {path} is readable by every user (mode {stat.S_IMODE(mode):04o}): "
                          f"chmod o-rwx {path}")
    if len(text) < min_length:
        raise SecretError(f"the {what} in {path} is shorter than {min_length} characters"
                          + (": use e.g. 'openssl rand -hex 24'" if min_length > 1 else ""))
    return text


def secret_path(path: str | None, what: str, min_length: int = 1) -> str | None:
    """A configuration validator's check: the path back, or ValueError (pydantic reports it with its key)."""
    if path is not None:
        try:
            check_secret_file(path, what, min_length)
        except SecretError as e:
            raise ValueError(str(e)) from None
    return path
