"""The few error types vsr raises on purpose, each with the exit code the CLI uses.

Anything else that escapes is a bug and exits 1 with a traceback only under ``--debug``.
"""

from __future__ import annotations


class VsrError(Exception):
    """Base class: a message meant for the user, and the process exit code that goes with it."""

    exit_code = 1


class UsageError(VsrError):
    """Bad flag value, unknown model, output that exists or equals the input, unwritable folder."""

    exit_code = 2


class InputError(VsrError):
    """The input cannot be used: missing, not media, unreadable, absurd dimensions."""

    exit_code = 2


class WeightsError(VsrError):
    """Model weights are missing, corrupt, unsafe or do not match the architecture."""

    exit_code = 3


class ProcessingError(VsrError):
    """A runtime failure while upscaling or encoding (NaN in fp32, encoder error, disk full)."""

    exit_code = 1


class Interrupted(VsrError):
    """SIGINT (exit 130) or SIGTERM (exit 143) arrived mid-run."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
