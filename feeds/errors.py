"""The exceptions of the package, turned into HTTP answers or CLI messages at the edges only."""
from __future__ import annotations

from dataclasses import dataclass


class FeedsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(FeedsError):
    """A setting is unknown, of the wrong type or unusable; the message names the key."""


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field of an input object: ``message`` reads whole,
    e.g. ``title is empty`` or ``published: cannot read "not a date"``."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


class InvalidInput(FeedsError):
    """An input object (an article or a read event) was rejected; ``errors`` says why, field by field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


class StoreUnavailable(FeedsError):
    """The database cannot be reached right now; the service answers 503 until it can."""
