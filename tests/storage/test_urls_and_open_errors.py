"""Bad database URLs and unusable databases: one clear StorageError naming the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from weft.errors import StorageError
from weft.storage import mask_url, open_storage, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "database URL is empty"),
        ("weft.db", "malformed database URL 'weft.db': no scheme"),
        ("sqlite://weft.db", "a SQLite URL has three slashes"),
        ("sqlite:///", "no file name after sqlite:///"),
        ("sqlite:///x.db?mode=ro", "SQLite URLs take no query"),
        ("mysql://root@localhost/db", "unsupported database URL scheme 'mysql'"),
        ("postgresql://u:pw@host:notaport/db", "malformed database URL"),
    ],
)
async def test_malformed_urls(url: str, expected: str) -> None:
    with pytest.raises(StorageError) as raised:
        async with open_storage(url):
            pass
    assert expected in str(raised.value)
    assert "pw" not in str(raised.value)


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://bob:s3cret@db:5432/app") == "postgresql://bob:***@db:5432/app"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    parsed = parse_url("postgresql://bob:s3cret@db/app")
    assert parsed.masked == "postgresql://bob:***@db/app"
    assert parsed.dialect == "postgres"


async def test_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker}/sub/weft.db"
    with pytest.raises(StorageError) as raised:
        async with open_storage(url):
            pass
    message = str(raised.value)
    assert f"cannot create the folder {blocker}/sub for database {url}" in message
    assert "choose a writable path" in message


async def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorageError, match="is a folder, not a file"):
        async with open_storage(f"sqlite:///{tmp_path}/dir.db"):
            pass


async def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    url = f"sqlite:///{path}"
    with pytest.raises(StorageError) as raised:
        async with open_storage(url):
            pass
    message = str(raised.value)
    assert message.startswith(f"cannot open SQLite database {url}: file is not a database")
    assert "not a SQLite database" in message
    assert path.read_bytes().startswith(b"these are my notes")  # left as it was


async def test_relative_sqlite_path_and_folder_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_storage("sqlite:///.weft/nested/weft.db") as storage:
        assert storage.url.path == Path(".weft/nested/weft.db")
    assert (tmp_path / ".weft" / "nested" / "weft.db").is_file()


async def test_postgres_that_refuses_the_connection() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    with pytest.raises(StorageError) as raised:
        async with open_storage(url):
            pass
    message = str(raised.value)
    assert "postgresql://postgres:***@127.0.0.1:1/test" in message
    assert "hunter2" not in message
