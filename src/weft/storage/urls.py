"""Database URLs: parsing, validation and masking for messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from weft.errors import StorageError

Dialect = Literal["sqlite", "postgres"]

SUPPORTED = "sqlite:///PATH, sqlite:///:memory: or postgresql://USER@HOST:PORT/DB"


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL. ``raw`` keeps any password; ``masked`` is safe to print."""

    raw: str
    dialect: Dialect
    path: Path | None  # SQLite file; None for :memory: and Postgres

    @property
    def masked(self) -> str:
        return mask_url(self.raw)

    @property
    def in_memory(self) -> bool:
        return self.dialect == "sqlite" and self.path is None


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))


def parse_url(url: str) -> DatabaseUrl:
    """Parse ``url`` or raise a StorageError that names it (masked) and the accepted forms."""
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"database URL is empty; use {SUPPORTED}")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(f"malformed database URL {mask_url(url)!r}: no scheme; use {SUPPORTED}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise StorageError(
                f"malformed database URL {mask_url(url)!r}: a SQLite URL has three slashes "
                f"(sqlite:///relative/path.db or sqlite:////absolute/path.db)"
            )
        target = rest[1:]
        if "?" in target or "#" in target:
            raise StorageError(
                f"malformed database URL {mask_url(url)!r}: SQLite URLs take no query or "
                f"fragment; set SQLite options in the config's 'sqlite' section"
            )
        if target == ":memory:":
            return DatabaseUrl(raw=url, dialect="sqlite", path=None)
        if not target or target.endswith("/"):
            raise StorageError(
                f"malformed database URL {mask_url(url)!r}: no file name after sqlite:///"
            )
        return DatabaseUrl(raw=url, dialect="sqlite", path=Path(target))
    if scheme in ("postgresql", "postgres"):
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.errors import ProgrammingError

        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a port that is not a number
            conninfo_to_dict(url)
        except (ValueError, ProgrammingError) as e:
            raise StorageError(
                f"malformed database URL {mask_url(url)!r}: {_first_line(e)}; use {SUPPORTED}"
            ) from e
        return DatabaseUrl(raw=url, dialect="postgres", path=None)
    raise StorageError(
        f"unsupported database URL scheme {scheme!r} in {mask_url(url)!r}; use {SUPPORTED}"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
