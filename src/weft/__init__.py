"""weft: a durable, self-hosted runtime for LangGraph agents."""

from weft.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    StorageError,
    UnprocessableEntityError,
    WeftError,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "NotFoundError",
    "StorageError",
    "UnprocessableEntityError",
    "WeftError",
    "__version__",
]
