"""Typed errors. Each carries the thing at fault (a path or argument) and the problem, so
the CLI can print one line: ``bsafusion: error: <where>: <problem>``."""

from __future__ import annotations

__all__ = ["BsafusionError", "ConfigError", "InputError", "WeightsError"]


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
