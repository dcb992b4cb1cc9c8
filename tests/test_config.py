"""Settings.load: files, discovery, environment overrides and the text of every error."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from weft.config import ConfigWarning, Settings
from weft.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.load(path, env=env or {})
    return str(info.value)


# --- defaults and discovery -----------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env={})
    assert s.config_path is None
    assert s.base_dir == tmp_path
    assert s.database_url == f"sqlite:///{tmp_path}/.weft/weft.db"
    assert s.database_url.startswith("sqlite:////")
    assert s.graphs == {}
    assert s.env is None
    assert s.dependencies == []
    assert (s.http.host, s.http.port, s.http.max_body_bytes) == ("127.0.0.1", 2024, 10 * 2**20)
    assert s.sqlite.synchronous == "full"
    assert s.postgres.pool_size == 10
    assert s.ignored_keys == ()


def test_weft_yaml_found_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "weft.yaml",
        "http:\n  port: 8123\nsqlite:\n  synchronous: normal\ngraphs:\n  agent: ./a.py:graph\n",
    )
    write(tmp_path / "langgraph.json", '{"graphs": {"other": "b.py:g"}}')
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env={})
    assert s.config_path == tmp_path / "weft.yaml"
    assert s.http.port == 8123
    assert s.sqlite.synchronous == "normal"
    assert s.graphs == {"agent": "./a.py:graph"}


def test_weft_yml_and_langgraph_json_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "langgraph.json", '{"graphs": {"g": "g.py:graph"}}')
    assert Settings.load(env={}).config_path == tmp_path / "langgraph.json"
    write(tmp_path / "weft.yml", "http: {port: 9000}\n")
    assert Settings.load(env={}).config_path == tmp_path / "weft.yml"


def test_explicit_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "weft.yaml", "http: {port: 1111}\n")
    other = write(tmp_path / "conf" / "prod.yaml", "http: {port: 2222}\n")
    s = Settings.load(other, env={})
    assert s.http.port == 2222
    assert s.config_path == other
    assert s.base_dir == other.parent
    assert s.database_url == f"sqlite:///{other.parent}/.weft/weft.db"
    # a str works too
    assert Settings.load(str(other), env={}).http.port == 2222


def test_missing_explicit_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_error(missing) == f"config file {missing} does not exist"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    s = Settings.load(write(tmp_path / "weft.yaml", "# nothing yet\n"), env={})
    assert s.http.port == 2024


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    s = Settings.load(write(tmp_path / "weft.yaml", "graphs:\nhttp:\ndependencies:\n"), env={})
    assert s.graphs == {}
    assert s.http.port == 2024
    assert s.dependencies == []


# --- langgraph.json ---------------------------------------------------------------------------


def test_langgraph_json_graphs_env_dependencies(tmp_path: Path) -> None:
    path = write(
        tmp_path / "langgraph.json",
        '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agent.py:graph"},\n'
        '  "env": ".env"\n}\n',
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Settings.load(path, env={})
    assert s.graphs == {"agent": "./agent.py:graph"}
    assert s.env == ".env"
    assert s.dependencies == ["."]
    assert s.ignored_keys == ()

    write(path, '{"env": {"OPENAI_API_KEY": "sk-x"}}')
    assert Settings.load(path, env={}).env == {"OPENAI_API_KEY": "sk-x"}


def test_langgraph_json_weft_object(tmp_path: Path) -> None:
    path = write(
        tmp_path / "langgraph.json",
        '{"graphs": {}, "weft": {"database_url": "sqlite:///db/w.db", "http": {"port": 3000}}}',
    )
    s = Settings.load(path, env={})
    assert s.database_url == f"sqlite:///{tmp_path}/db/w.db"
    assert s.http.port == 3000


def test_langgraph_json_ignored_keys_warn(tmp_path: Path) -> None:
    path = write(
        tmp_path / "langgraph.json",
        '{"python_version": "3.12", "graphs": {}, "dockerfile_lines": [], "http": {"cors": {}}}',
    )
    with pytest.warns(ConfigWarning) as record:
        s = Settings.load(path, env={})
    assert len(record) == 1
    message = str(record[0].message)
    assert str(path) in message
    assert "python_version, dockerfile_lines, http" in message
    assert s.ignored_keys == ("python_version", "dockerfile_lines", "http")


def test_langgraph_json_unknown_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "langgraph.json",
        '{\n  "graphs": {},\n  "dependancies": ["."]\n}\n',
    )
    assert load_error(path) == (
        f"{path}: dependancies (line 3): unknown key; did you mean 'dependencies'? "
        "(allowed: graphs, env, dependencies, weft)"
    )


def test_langgraph_json_unknown_key_inside_weft(tmp_path: Path) -> None:
    path = write(
        tmp_path / "langgraph.json",
        '{\n  "weft": {\n    "databse_url": "sqlite:///x.db"\n  }\n}\n',
    )
    message = load_error(path)
    assert f"{path}: weft.databse_url (line 3): unknown key; did you mean 'database_url'?" in (
        message
    )


def test_langgraph_json_key_set_twice(tmp_path: Path) -> None:
    path = write(tmp_path / "langgraph.json", '{"graphs": {}, "weft": {"graphs": {}}}')
    assert "weft.graphs (line 1): 'graphs' is also set at the top level" in load_error(path)


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "langgraph.json", '{\n  "graphs": {},\n  "env": [1,,2]\n}\n')
    assert load_error(path) == (f"{path}: invalid JSON at line 3, column 13: Expecting value")


def test_json_top_level_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "langgraph.json", "[1, 2]")
    assert load_error(path) == f"{path}: the top level must be a JSON object, not a list"


# --- weft.yaml errors -------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http:\n  port: 2024\ndatabse_url: sqlite:///x.db\n")
    assert load_error(path) == (
        f"{path}: databse_url (line 3): unknown key; did you mean 'database_url'? "
        "(allowed: database_url, graphs, env, dependencies, http, sqlite, postgres, runs, plans)"
    )


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "graphs: {}\nhttp:\n  host: 0.0.0.0\n  prot: 80\n")
    assert load_error(path) == (
        f"{path}: http.prot (line 4): unknown key; did you mean 'port'? "
        "(allowed: host, port, max_body_bytes, shutdown_grace, access_log)"
    )


def test_internal_fields_not_settable_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "base_dir: /etc\nconfig_path: /x\n")
    message = load_error(path)
    assert f"{path}: base_dir (line 1): unknown key" in message
    assert f"{path}: config_path (line 2): unknown key" in message


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http:\n  port: 1\n bad: 2\n")
    message = load_error(path)
    assert message.startswith(f"{path}: invalid YAML at line 3, column 2: ")


def test_yaml_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "- a\n- b\n")
    assert load_error(path) == f"{path}: the top level must be a mapping of settings, not a list"


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http:\n  port: 1\n  port: 2\n")
    assert load_error(path) == f"{path}: http.port (line 3): duplicate key (first set on line 2)"


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "# comment\nhttp: {port: abc}\n")
    assert load_error(path) == (
        f"{path}: http.port (line 2): Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    )


def test_port_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http:\n  port: 70000\n")
    assert load_error(path) == (
        f"{path}: http.port (line 2): Input should be less than or equal to 65535 (got 70000)"
    )


def test_bad_literal_lists_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "sqlite:\n  synchronous: fast\n")
    assert load_error(path) == (
        f"{path}: sqlite.synchronous (line 2): Input should be 'full' or 'normal' (got 'fast')"
    )


def test_every_error_is_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "weft.yaml",
        "http:\n  port: 0\n  max_body_bytes: -1\npostgres: {pool_size: many}\n"
        "graphs: {a: 5}\ndependencies: [1]\nenv: {A: 1}\nextra: 1\n",
    )
    lines = load_error(path).splitlines()
    assert len(lines) == 7
    assert [line.split(": ")[1] for line in lines] == [
        "http.port (line 2)",
        "http.max_body_bytes (line 3)",
        "postgres.pool_size (line 4)",
        "graphs.a (line 5)",
        "dependencies[0] (line 6)",
        "env (line 7)",
        "extra (line 8)",
    ]
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_malformed_database_url_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http: {}\ndatabase_url: mysql://localhost/db\n")
    message = load_error(path)
    assert message.startswith(f"{path}: database_url (line 2): unsupported database URL scheme")
    path = write(tmp_path / "weft.yaml", "database_url: sqlite://x.db\n")
    assert f"{path}: database_url (line 1): malformed database URL" in load_error(path)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.toml", "")
    assert "unsupported config file type '.toml'" in load_error(path)


# --- database URL resolution ------------------------------------------------------------------


def test_relative_sqlite_path_resolves_against_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "proj" / "weft.yaml", "database_url: sqlite:///data/x.db\n")
    s = Settings.load(path, env={})
    assert s.database_url == f"sqlite:///{tmp_path}/proj/data/x.db"


def test_relative_sqlite_path_from_env_resolves_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "proj" / "weft.yaml", "database_url: sqlite:///data/x.db\n")
    s = Settings.load(path, env={"WEFT_DATABASE_URL": "sqlite:///other/y.db"})
    assert s.database_url == f"sqlite:///{tmp_path}/other/y.db"


def test_memory_absolute_and_postgres_urls_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "database_url: 'sqlite:///:memory:'\n")
    assert Settings.load(path, env={}).database_url == "sqlite:///:memory:"
    write(path, f"database_url: sqlite:///{tmp_path}/abs.db\n")
    assert Settings.load(path, env={}).database_url == f"sqlite:///{tmp_path}/abs.db"
    pg = "postgresql://weft:secret@db.example:5432/weft"
    write(path, f"database_url: {pg}\n")
    assert Settings.load(path, env={}).database_url == pg


# --- environment ------------------------------------------------------------------------------


def test_env_overrides_database_url_and_port(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "database_url: sqlite:///a.db\nhttp: {port: 1000}\n")
    s = Settings.load(
        path,
        env={
            "WEFT_DATABASE_URL": "sqlite:///:memory:",
            "WEFT_PORT": "8080",
            "WEFT_HOST": "0.0.0.0",
            "WEFT_MAX_BODY_BYTES": "1024",
            "WEFT_ACCESS_LOG": "true",
            "WEFT_SQLITE_SYNCHRONOUS": "normal",
            "WEFT_POSTGRES_POOL_SIZE": "3",
            "WEFT_TEST_POSTGRES_URL": "postgresql://x@y/z",  # test-suite variable: ignored
            "WEFT_SOMETHING_ELSE": "1",  # no close match: ignored
        },
    )
    assert s.database_url == "sqlite:///:memory:"
    assert (s.http.host, s.http.port, s.http.max_body_bytes) == ("0.0.0.0", 8080, 1024)
    assert s.http.access_log is True
    assert s.sqlite.synchronous == "normal"
    assert s.postgres.pool_size == 3


def test_env_override_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.load(env={"WEFT_PORT": "9999"}).http.port == 9999


def test_empty_env_value_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.load(env={"WEFT_PORT": ""}).http.port == 2024


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http: {port: 1000}\n")
    assert load_error(path, {"WEFT_PORT": "eighty"}) == (
        "environment variable WEFT_PORT: Input should be a valid integer, "
        "unable to parse string as an integer (got 'eighty')"
    )
    message = load_error(path, {"WEFT_SQLITE_SYNCHRONOUS": "off"})
    assert message == (
        "environment variable WEFT_SQLITE_SYNCHRONOUS: Input should be 'full' or 'normal' "
        "(got 'off')"
    )
    assert load_error(path, {"WEFT_ACCESS_LOG": "maybe"}) == (
        "environment variable WEFT_ACCESS_LOG: Input should be a valid boolean, "
        "unable to interpret input (got 'maybe')"
    )


def test_bad_env_database_url_names_the_variable(tmp_path: Path) -> None:
    message = load_error(None, {"WEFT_DATABASE_URL": "postgresql://u:hunter2@h:notaport/db"})
    assert message.startswith("environment variable WEFT_DATABASE_URL: malformed database URL")
    assert "hunter2" not in message


def test_misspelled_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_error(None, {"WEFT_DATABSE_URL": "sqlite:///x.db"}) == (
        "environment variable WEFT_DATABSE_URL: not a weft setting; did you mean WEFT_DATABASE_URL?"
    )


def test_file_and_env_errors_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path / "weft.yaml", "http: {prot: 1}\n")
    message = load_error(path, {"WEFT_POSTGRES_POOL_SIZE": "0"})
    assert message.splitlines() == [
        f"{path}: http.prot (line 1): unknown key; did you mean 'port'? "
        "(allowed: host, port, max_body_bytes, shutdown_grace, access_log)",
        "environment variable WEFT_POSTGRES_POOL_SIZE: "
        "Input should be greater than or equal to 1 (got '0')",
    ]


# --- the model ----------------------------------------------------------------------------------


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings.load(write(tmp_path / "weft.yaml", "http: {port: 1234}\n"), env={})
    with pytest.raises(ValidationError, match="frozen"):
        s.database_url = "sqlite:///:memory:"
    with pytest.raises(ValidationError, match="frozen"):
        s.http.port = 1
    assert s.http.port == 1234


def test_direct_construction_validates(tmp_path: Path) -> None:
    s = Settings(base_dir=tmp_path, database_url="sqlite:///rel.db")
    assert s.database_url == f"sqlite:///{tmp_path}/rel.db"
    with pytest.raises(ValidationError, match="no scheme"):
        Settings(database_url="nonsense")


@pytest.mark.parametrize("name", ["weft.yaml", "python/langgraph.json"])
def test_example_files_load(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Settings.load(EXAMPLES / name, env={})
    assert s.config_path == EXAMPLES / name
    if name == "weft.yaml":
        assert s.database_url == f"sqlite:///{EXAMPLES}/.weft/weft.db"
        assert (s.http.host, s.http.port) == ("127.0.0.1", 2024)
        assert set(s.graphs) == {"react", "plan_execute", "human_review", "echo"}
    else:
        assert s.dependencies == ["."]
        assert s.env == {}
        assert s.graphs == {"echo": "./agent.py:graph", "echo_factory": "./agent.py:make_graph"}
