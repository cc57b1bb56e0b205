"""Typed errors. Each carries the thing at fault (a path or argument) and the problem, so
the CLI can print one line: ``bsafusion: error: <where>: <problem>``."""

from __future__ import annotations

import errno

__all__ = ["BsafusionError", "ConfigError", "InputError", "OutputError", "WeightsError"]


class BsafusionError(Exception):
    """Base class: ``where`` names the file or argument, ``problem`` says what is wrong."""

    def __init__(self, where: object, problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class InputError(BsafusionError, ValueError):
    """An input image, tensor or file is unusable (shape, channels, NaN, unreadable...)."""


class WeightsError(BsafusionError):
    """A weights file is missing, corrupt, of the wrong format or fails its sha256 check."""


class ConfigError(BsafusionError, ValueError):
    """A configuration value is invalid."""


# errors after which no further output can be written (a batch stops)
_FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class OutputError(BsafusionError):
    """An output file could not be written (disk full, read-only, permission...).

    Attributes:
        fatal: no further output can be written either (no space left, read-only file
            system): a batch stops instead of trying the next pair.
    """

    def __init__(self, where: object, problem: str, *, fatal: bool = False) -> None:
        super().__init__(where, problem)
        self.fatal = fatal

    @classmethod
    def from_os_error(cls, where: object, exc: OSError) -> OutputError:
        """The :class:`OutputError` of an ``OSError`` raised while writing ``where``."""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return cls(where, f"cannot be written: {reason[:1].lower()}{reason[1:]}",
                   fatal=exc.errno in _FATAL_ERRNOS)
