"""The few error types vsr raises on purpose, each with the exit code the CLI uses.

Messages speak the library's words: an option is named as in YAML and ``upscale_video(**options)``
(``crf``, ``segment_seconds``); :class:`OptionError` keeps the option, its value and where it came
from, so the CLI can name the flag (``--crf``) when the value came from the command line. Anything
else that escapes is a bug and exits 1 with a traceback only under ``--debug``.
"""

from __future__ import annotations

from typing import Any

COMMAND_LINE = "command line"  # OptionError.source of a value given as a flag


class VsrError(Exception):
    """Base class: a message meant for the user, and the process exit code that goes with it."""

    exit_code = 1
    path: str | None = None  # the file the error is about, once named (see about())

    def about(self, path: object) -> VsrError:
        """Name the file this error is about in front of its message (once; not when it already
        starts with it). Returns self, to re-raise."""
        if self.path is None:
            self.path = str(path)
            if not str(self).startswith(self.path):
                self.args = (f"{self.path}: {self}", *self.args[1:])
        return self

    def also(self, text: str) -> VsrError:
        """Add a clause to the message ("...; text"). Returns self."""
        self.args = (f"{self}; {text}", *self.args[1:])
        return self


class UsageError(VsrError):
    """Bad option value, unknown model, output that exists or equals the input, unwritable folder."""

    exit_code = 2


class OptionError(UsageError):
    """One option has a value vsr cannot use: ``option``, ``value``, ``why``, and ``source`` (a file, a
    ``VSR_*`` variable, :data:`COMMAND_LINE`, or None for a value passed in Python)."""

    def __init__(self, option: str, value: Any, why: str, source: str | None = None) -> None:
        self.option, self.value, self.why, self.source = option, value, why, source
        where = f"{source}: " if source and source != COMMAND_LINE else ""
        super().__init__(f"{where}{option}={_short(value)}: {why}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputError(VsrError):
    """The input cannot be used: missing, not media, unreadable, absurd dimensions."""

    exit_code = 2


class BusyError(UsageError):
    """Another run is writing the same output (or segment work directory) right now."""


class WeightsError(VsrError):
    """Model weights are missing, corrupt, unsafe or do not match the architecture."""

    exit_code = 3


class ProcessingError(VsrError):
    """A runtime failure while upscaling or encoding (NaN in fp32, encoder error, disk full)."""

    exit_code = 1


class Interrupted(VsrError):
    """SIGINT (exit 130), SIGTERM (143) or SIGHUP (129) arrived mid-run."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
