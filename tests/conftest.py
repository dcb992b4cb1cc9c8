"""Shared fixtures: a fresh database for every backend the machine offers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from weft.storage import Storage, open_storage

POSTGRES_URL = os.environ.get("WEFT_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="set WEFT_TEST_POSTGRES_URL to run the Postgres tests"
)


def _with_database(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty Postgres database, dropped after the test."""
    if not POSTGRES_URL:
        pytest.skip("set WEFT_TEST_POSTGRES_URL to run the Postgres tests")
    name = f"weft_test_{uuid.uuid4().hex[:12]}"
    admin = _with_database(POSTGRES_URL, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


BACKENDS = [
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgres", marks=needs_postgres),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per backend."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path}/weft.db"
    if request.param == "sqlite-memory":
        return "sqlite:///:memory:"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    async with open_storage(database_url) as opened:
        yield opened
