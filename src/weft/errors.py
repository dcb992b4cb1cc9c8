"""One exception tree for weft. Each class carries the HTTP status it maps to.

Class names follow ``langgraph_sdk.errors`` so that an error raised in process and
the typed error an SDK client sees for the same problem share a name.
"""

from __future__ import annotations


class WeftError(Exception):
    """Base of every error weft raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequestError(WeftError):
    status_code = 400


class NotFoundError(WeftError):
    status_code = 404


class ConflictError(WeftError):
    status_code = 409


class UnprocessableEntityError(WeftError):
    status_code = 422


class ConfigError(WeftError):
    """A configuration file or environment variable is invalid.

    The message names the file, the key path and, where the format allows, the line.
    """

    status_code = 400


class RunError(WeftError):
    """A graph run failed: a node raised, or it hit its recursion limit or timeout."""

    status_code = 500


class StorageError(WeftError):
    """The database cannot be opened or used. The message names the (masked) URL."""

    status_code = 503


class SchemaVersionError(StorageError):
    """The database was written by a newer weft than this one."""


__all__ = [
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "NotFoundError",
    "RunError",
    "SchemaVersionError",
    "StorageError",
    "UnprocessableEntityError",
    "WeftError",
]
