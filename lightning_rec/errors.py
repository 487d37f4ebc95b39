"""How the command lines report a problem with their input: one line, ``error: <message>``, exit status 2.

Our checks raise ``ValueError`` (``DataFormatError``, ``BackboneError``, ...) or ``FileNotFoundError`` with a
message that names the problem and the fix; a traceback under it would only bury it. ``--debug`` (or
``LIGHTNING_REC_DEBUG=1``) keeps the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: Errors whose message is the whole story for a user (bad input, missing files or packages).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, ModuleNotFoundError)


def debug_requested(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether tracebacks were asked for (flag or environment)."""
    flag = "--debug" in argv
    env = os.environ.get("LIGHTNING_REC_DEBUG", "0").lower() in ("1", "true", "yes")
    return [arg for arg in argv if arg != "--debug"], flag or env


@contextlib.contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turns a :data:`USER_ERRORS` exception into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {root_cause(err)} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def root_cause(error: BaseException) -> BaseException:
    """The innermost error of the chain that caused ``error``: jsonargparse, for one, wraps a model's own
    ``ValueError`` in a union-validation error that prints the whole configuration."""
    while isinstance(error.__cause__, USER_ERRORS):
        error = error.__cause__
    return error
