"""The one base class of errors a user can act on: the CLI prints `str(e)` as one line, no traceback."""


class DfwatchError(Exception):
    exit_code = 1
