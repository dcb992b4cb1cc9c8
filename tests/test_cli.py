"""The ``weft`` command line, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weft import __version__
from weft.cli import app

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("WEFT_") and not name.startswith("WEFT_TEST_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"weft {__version__}"


def test_db_status_creates_and_migrates_the_default_database(project: Path) -> None:
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert (project / ".weft" / "weft.db").is_file()
    assert "threads" in result.output
    assert "ok" in result.output


def test_config_show_masks_passwords(project: Path) -> None:
    (project / "weft.yaml").write_text(
        "database_url: postgresql://weft:topsecret@db.internal:5432/weft\n"
    )
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "postgresql://weft:***@db.internal:5432/weft" in result.output
    assert "topsecret" not in result.output


def test_bad_config_exits_2_naming_file_key_and_line(project: Path) -> None:
    (project / "weft.yaml").write_text("http:\n  host: 127.0.0.1\n  prot: 8080\n")
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 2
    assert "weft.yaml: http.prot (line 3): unknown key; did you mean 'port'?" in result.output


def test_unusable_database_exits_1_with_one_clear_line(project: Path) -> None:
    (project / "notes.db").write_text("not a database " * 100)
    result = runner.invoke(app, ["db", "status", "--database", "sqlite:///notes.db"])
    assert result.exit_code == 1
    assert "error: cannot open SQLite database" in result.output
    assert "file is not a database" in result.output
    assert "Traceback" not in result.output


def test_console_script_is_installed(project: Path) -> None:
    weft = Path(sys.executable).parent / "weft"
    done = subprocess.run([str(weft), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("serve", "db", "config", "threads", "sessions", "doctor"):
        assert command in done.stdout


def test_database_option_keeps_the_other_environment_settings(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEFT_POSTGRES_POOL_SIZE", "50")
    monkeypatch.setenv("WEFT_DATABASE_URL", "not a url")  # overridden by --database
    result = runner.invoke(app, ["config", "show", "--database", "sqlite:///other.db"])
    assert result.exit_code == 0, result.output
    assert "50" in result.output
    assert f"sqlite:///{project}/other.db" in result.output


def test_bad_database_option_is_named_as_the_option(project: Path) -> None:
    result = runner.invoke(app, ["db", "status", "--database", "mysql://x/y"])
    assert result.exit_code == 2
    assert "error: --database: unsupported database URL scheme 'mysql'" in result.output
