"""The one base class of errors a user can act on: the CLI prints `str(e)` as one line, no traceback."""

PERMANENT_EXIT = 78  # sysexits' EX_CONFIG: a process that can never work as configured; not restarted


class DfwatchError(Exception):
    exit_code = 1
    transient = False            # true: the same call may work later (a server still starting)


class BundleError(DfwatchError):
    """A bundle that cannot be used; the message names the file and how to fix it."""


def as_permanent(error: DfwatchError) -> DfwatchError:
    """`error` with the exit code that tells the supervisor and systemd (RestartPreventExitStatus=78)
    not to restart: a wrong bundle or a model server serving another bundle stays wrong."""
    if not error.transient:
        error.exit_code = PERMANENT_EXIT
    return error
