"""Versioned schema migrations for weft's own tables, one list per dialect.

A migration is applied once, in order, inside the transaction that records it in
``weft_schema``. Never edit a released migration: append a new one.
The checkpointer tables of Postgres and the store tables of both backends belong to
LangGraph's libraries, which migrate them with their own ``setup()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from weft.errors import SchemaVersionError
from weft.storage.urls import Dialect


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


SCHEMA_TABLE_SQLITE = """
CREATE TABLE IF NOT EXISTS weft_schema (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""

SCHEMA_TABLE_POSTGRES = """
CREATE TABLE IF NOT EXISTS weft_schema (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


def _records(json: str, ts: str, now: str) -> tuple[str, ...]:
    """weft's record tables, written once for both dialects' column types."""
    return (
        f"""CREATE TABLE assistants (
            assistant_id TEXT PRIMARY KEY,
            graph_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            config {json} NOT NULL,
            context {json} NOT NULL,
            metadata {json} NOT NULL,
            version INTEGER NOT NULL,
            owner TEXT,
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now}
        )""",
        "CREATE INDEX assistants_graph_id ON assistants (graph_id)",
        f"""CREATE TABLE assistant_versions (
            assistant_id TEXT NOT NULL REFERENCES assistants (assistant_id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            graph_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            config {json} NOT NULL,
            context {json} NOT NULL,
            metadata {json} NOT NULL,
            created_at {ts} NOT NULL DEFAULT {now},
            PRIMARY KEY (assistant_id, version)
        )""",
        f"""CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            user_id TEXT,
            name TEXT,
            status TEXT NOT NULL,
            metadata {json} NOT NULL,
            state {json} NOT NULL,
            state_version INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now}
        )""",
        "CREATE INDEX sessions_user_id ON sessions (user_id)",
        "CREATE INDEX sessions_status ON sessions (status)",
        f"""CREATE TABLE threads (
            thread_id TEXT PRIMARY KEY,
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now},
            state_updated_at {ts},
            metadata {json} NOT NULL,
            config {json} NOT NULL,
            status TEXT NOT NULL,
            "values" {json},
            interrupts {json} NOT NULL,
            lifecycle TEXT NOT NULL,
            kind TEXT NOT NULL,
            graph_id TEXT,
            session_id TEXT REFERENCES sessions (session_id),
            name TEXT,
            parent_thread_id TEXT,
            source_checkpoint_id TEXT,
            count_messages INTEGER NOT NULL DEFAULT 0,
            count_checkpoints INTEGER NOT NULL DEFAULT 0,
            count_branches INTEGER NOT NULL DEFAULT 0,
            count_runs INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            UNIQUE (session_id, name)
        )""",
        "CREATE INDEX threads_session_id ON threads (session_id)",
        "CREATE INDEX threads_parent_thread_id ON threads (parent_thread_id)",
        "CREATE INDEX threads_status ON threads (status)",
        "CREATE INDEX threads_graph_id ON threads (graph_id)",
        "CREATE INDEX threads_created_at ON threads (created_at)",
        "CREATE INDEX threads_updated_at ON threads (updated_at)",
        f"""CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            thread_id TEXT REFERENCES threads (thread_id) ON DELETE CASCADE,
            assistant_id TEXT NOT NULL,
            status TEXT NOT NULL,
            metadata {json} NOT NULL,
            kwargs {json} NOT NULL,
            multitask_strategy TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            owner TEXT,
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now},
            started_at {ts},
            ended_at {ts}
        )""",
        "CREATE INDEX runs_thread_id ON runs (thread_id, created_at)",
        "CREATE INDEX runs_status ON runs (status)",
        f"""CREATE TABLE run_events (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            event TEXT NOT NULL,
            data {json} NOT NULL,
            created_at {ts} NOT NULL DEFAULT {now},
            PRIMARY KEY (run_id, seq)
        )""",
        f"""CREATE TABLE interactions (
            session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            content {json} NOT NULL,
            metadata {json} NOT NULL,
            thread_id TEXT,
            run_id TEXT,
            created_at {ts} NOT NULL DEFAULT {now},
            PRIMARY KEY (session_id, seq)
        )""",
        f"""CREATE TABLE crons (
            cron_id TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL,
            thread_id TEXT REFERENCES threads (thread_id) ON DELETE CASCADE,
            schedule TEXT NOT NULL,
            timezone TEXT NOT NULL DEFAULT 'UTC',
            end_time {ts},
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            payload {json} NOT NULL,
            metadata {json} NOT NULL,
            next_run_date {ts},
            owner TEXT,
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now}
        )""",
        "CREATE INDEX crons_next_run_date ON crons (next_run_date)",
    )


_SQLITE_NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="records: assistants, sessions, threads, runs, run events, interactions, "
        "crons; SQLite checkpoint tables",
        sqlite=(
            *_records("TEXT", "TEXT", _SQLITE_NOW),
            """CREATE TABLE checkpoints (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                parent_checkpoint_id TEXT,
                run_id TEXT,
                type TEXT,
                checkpoint BLOB NOT NULL,
                metadata TEXT NOT NULL,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX checkpoints_run_id ON checkpoints (run_id) WHERE run_id IS NOT NULL",
            """CREATE TABLE checkpoint_writes (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                task_path TEXT NOT NULL DEFAULT '',
                idx INTEGER NOT NULL,
                channel TEXT NOT NULL,
                type TEXT,
                value BLOB,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
            ) WITHOUT ROWID""",
        ),
        postgres=(
            *_records("JSONB", "TIMESTAMPTZ", "now()"),
            # The checkpoint tables come from langgraph-checkpoint-postgres's setup(),
            # which runs before weft's migrations; this index serves delete_for_runs.
            "CREATE INDEX IF NOT EXISTS checkpoints_run_id ON checkpoints ((metadata->>'run_id'))",
        ),
    ),
)

# --- version 2: exact counts kept by the database, rollback marks, a metadata index ----------

# A number's canonical text in thread_metadata (1 and 1.0 are the same key); text is JSON-quoted
# so that "1" (a string) and 1 (a number) stay apart.
_SQLITE_CANONICAL = (
    "CASE type WHEN 'text' THEN json_quote(value) WHEN 'integer' THEN "
    "CAST(CAST(value AS REAL) AS TEXT) WHEN 'real' THEN CAST(CAST(value AS REAL) AS TEXT) "
    "ELSE type END"
)

_SQLITE_V2: tuple[str, ...] = (
    "ALTER TABLE threads ADD COLUMN rollbacks TEXT NOT NULL DEFAULT '[]'",
    # One row per top-level scalar metadata key: the index behind metadata filters on threads.
    """CREATE TABLE thread_metadata (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        PRIMARY KEY (key, value, thread_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX thread_metadata_thread_id ON thread_metadata (thread_id)",
    f"""CREATE TRIGGER threads_metadata_insert AFTER INSERT ON threads BEGIN
        INSERT OR IGNORE INTO thread_metadata (key, value, thread_id)
        SELECT key, {_SQLITE_CANONICAL}, NEW.thread_id FROM json_each(NEW.metadata)
        WHERE type NOT IN ('object', 'array');
    END""",
    f"""CREATE TRIGGER threads_metadata_update AFTER UPDATE OF metadata ON threads
    WHEN NEW.metadata IS NOT OLD.metadata BEGIN
        DELETE FROM thread_metadata WHERE thread_id = OLD.thread_id;
        INSERT OR IGNORE INTO thread_metadata (key, value, thread_id)
        SELECT key, {_SQLITE_CANONICAL}, NEW.thread_id FROM json_each(NEW.metadata)
        WHERE type NOT IN ('object', 'array');
    END""",
    """CREATE TRIGGER threads_metadata_delete AFTER DELETE ON threads BEGIN
        DELETE FROM thread_metadata WHERE thread_id = OLD.thread_id;
    END""",
    # A thread row created for checkpoints already stored under its ID counts them.
    """CREATE TRIGGER threads_count_existing AFTER INSERT ON threads BEGIN
        UPDATE threads SET count_checkpoints = (
            SELECT count(*) FROM checkpoints
            WHERE thread_id = NEW.thread_id AND checkpoint_ns = ''
        ) WHERE thread_id = NEW.thread_id;
    END""",
    """CREATE TRIGGER threads_branch_insert AFTER INSERT ON threads
    WHEN NEW.kind = 'branch' AND NEW.parent_thread_id IS NOT NULL BEGIN
        UPDATE threads SET count_branches = count_branches + 1
        WHERE thread_id = NEW.parent_thread_id;
    END""",
    """CREATE TRIGGER threads_branch_delete AFTER DELETE ON threads
    WHEN OLD.kind = 'branch' AND OLD.parent_thread_id IS NOT NULL BEGIN
        UPDATE threads SET count_branches = count_branches - 1
        WHERE thread_id = OLD.parent_thread_id;
    END""",
    """CREATE TRIGGER checkpoints_count_insert AFTER INSERT ON checkpoints
    WHEN NEW.checkpoint_ns = '' BEGIN
        UPDATE threads SET count_checkpoints = count_checkpoints + 1
        WHERE thread_id = NEW.thread_id;
    END""",
    """CREATE TRIGGER checkpoints_count_delete AFTER DELETE ON checkpoints
    WHEN OLD.checkpoint_ns = '' BEGIN
        UPDATE threads SET count_checkpoints = count_checkpoints - 1
        WHERE thread_id = OLD.thread_id;
    END""",
    """CREATE TRIGGER runs_count_insert AFTER INSERT ON runs WHEN NEW.thread_id IS NOT NULL BEGIN
        UPDATE threads SET count_runs = count_runs + 1 WHERE thread_id = NEW.thread_id;
    END""",
    """CREATE TRIGGER runs_count_delete AFTER DELETE ON runs WHEN OLD.thread_id IS NOT NULL BEGIN
        UPDATE threads SET count_runs = count_runs - 1 WHERE thread_id = OLD.thread_id;
    END""",
    "CREATE INDEX threads_lifecycle ON threads (lifecycle)",
    "CREATE INDEX sessions_created_at ON sessions (created_at)",
)

_POSTGRES_V2: tuple[str, ...] = (
    "ALTER TABLE threads ADD COLUMN rollbacks JSONB NOT NULL DEFAULT '[]'",
    "CREATE INDEX threads_metadata ON threads USING GIN (metadata jsonb_path_ops)",
    "CREATE INDEX threads_lifecycle ON threads (lifecycle)",
    "CREATE INDEX sessions_created_at ON sessions (created_at)",
    """CREATE FUNCTION weft_count_checkpoints() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.checkpoint_ns = '' THEN
                UPDATE threads SET count_checkpoints = count_checkpoints + 1
                WHERE thread_id = NEW.thread_id;
            END IF;
        ELSIF OLD.checkpoint_ns = '' THEN
            UPDATE threads SET count_checkpoints = count_checkpoints - 1
            WHERE thread_id = OLD.thread_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER checkpoints_count AFTER INSERT OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION weft_count_checkpoints()""",
    """CREATE FUNCTION weft_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE threads SET count_runs = count_runs + 1 WHERE thread_id = NEW.thread_id;
        ELSE
            UPDATE threads SET count_runs = count_runs - 1 WHERE thread_id = OLD.thread_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER runs_count AFTER INSERT OR DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION weft_count_runs()""",
    """CREATE FUNCTION weft_thread_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE threads SET count_checkpoints = (
                SELECT count(*) FROM checkpoints
                WHERE thread_id = NEW.thread_id AND checkpoint_ns = ''
            ) WHERE thread_id = NEW.thread_id;
            IF NEW.kind = 'branch' AND NEW.parent_thread_id IS NOT NULL THEN
                UPDATE threads SET count_branches = count_branches + 1
                WHERE thread_id = NEW.parent_thread_id;
            END IF;
        ELSIF OLD.kind = 'branch' AND OLD.parent_thread_id IS NOT NULL THEN
            UPDATE threads SET count_branches = count_branches - 1
            WHERE thread_id = OLD.parent_thread_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER threads_rows AFTER INSERT OR DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION weft_thread_rows()""",
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        version=2,
        description="thread counts kept by triggers, rollback marks, thread metadata index",
        sqlite=_SQLITE_V2,
        postgres=_POSTGRES_V2,
    ),
)

# --- version 3: the run queue's lookups -------------------------------------------------------

# A thread's in-flight runs (admission, finish) and its oldest pending one (FIFO claim).
_V3 = ("CREATE INDEX runs_thread_status ON runs (thread_id, status, created_at, run_id)",)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        version=3,
        description="runs index for in-flight lookups and FIFO claims",
        sqlite=_V3,
        postgres=_V3,
    ),
)

# --- version 4: crons as the scheduler keeps them ----------------------------------------------

# ``timezone`` becomes nullable (None: UTC, as the Platform shows it), ``on_run_completed``
# is new (stateless crons), and the lookups by thread (the cascade of a thread's deletion) and
# by assistant get indexes. SQLite cannot drop a NOT NULL: the table is rebuilt (it has no
# dependants).
_CRON_INDEXES = (
    "CREATE INDEX crons_thread_id ON crons (thread_id)",
    "CREATE INDEX crons_assistant_id ON crons (assistant_id)",
)
_SQLITE_V4: tuple[str, ...] = (
    f"""CREATE TABLE crons_v4 (
        cron_id TEXT PRIMARY KEY,
        assistant_id TEXT NOT NULL,
        thread_id TEXT REFERENCES threads (thread_id) ON DELETE CASCADE,
        schedule TEXT NOT NULL,
        timezone TEXT,
        end_time TEXT,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        next_run_date TEXT,
        owner TEXT,
        created_at TEXT NOT NULL DEFAULT {_SQLITE_NOW},
        updated_at TEXT NOT NULL DEFAULT {_SQLITE_NOW},
        on_run_completed TEXT
    )""",
    "INSERT INTO crons_v4 (cron_id, assistant_id, thread_id, schedule, timezone, end_time, "
    "enabled, payload, metadata, next_run_date, owner, created_at, updated_at) "
    "SELECT cron_id, assistant_id, thread_id, schedule, timezone, end_time, enabled, payload, "
    "metadata, next_run_date, owner, created_at, updated_at FROM crons",
    "DROP TABLE crons",
    "ALTER TABLE crons_v4 RENAME TO crons",
    "CREATE INDEX crons_next_run_date ON crons (next_run_date)",
    *_CRON_INDEXES,
)
_POSTGRES_V4: tuple[str, ...] = (
    "ALTER TABLE crons ALTER COLUMN timezone DROP NOT NULL, "
    "ALTER COLUMN timezone DROP DEFAULT, ADD COLUMN on_run_completed TEXT",
    *_CRON_INDEXES,
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        version=4,
        description="crons: nullable timezone, on_run_completed, thread and assistant indexes",
        sqlite=_SQLITE_V4,
        postgres=_POSTGRES_V4,
    ),
)

# --- version 5: session plans -----------------------------------------------------------------


def _plans(json: str, ts: str) -> tuple[str, ...]:
    """A session's plan and one row per named thread; both go with the session."""
    return (
        f"""CREATE TABLE plans (
            session_id TEXT PRIMARY KEY REFERENCES sessions (session_id) ON DELETE CASCADE,
            spec {json} NOT NULL,
            status TEXT NOT NULL,
            lease_owner TEXT,
            lease_until {ts},
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            started_at {ts},
            ended_at {ts}
        )""",
        "CREATE INDEX plans_status ON plans (status)",
        f"""CREATE TABLE plan_threads (
            session_id TEXT NOT NULL REFERENCES plans (session_id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            thread_id TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            started_at {ts},
            ended_at {ts},
            retry_at {ts},
            deadline {ts},
            error TEXT,
            reason TEXT,
            output {json},
            updated_at {ts} NOT NULL,
            PRIMARY KEY (session_id, name)
        )""",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        version=5,
        description="session plans: plans and plan_threads",
        sqlite=_plans("TEXT", "TEXT"),
        postgres=_plans("JSON", "TIMESTAMPTZ"),  # JSON keeps the order of keys (threads)
    ),
)

# --- version 6 (SQLite): in-flight runs indexed apart; a run's count kept by its admission ---

# The queue looks up only pending and running runs (a thread's, in FIFO order, and every one of
# a status at start-up): partial indexes hold just those, so an ended run leaves them (one
# delete) instead of moving within two indexes of every run ever made, and they stay small
# however many runs the database keeps. Queries must repeat the indexes' WHERE term verbatim
# for SQLite to use them (the runs storage builds theirs from ``INFLIGHT_RUNS``). The
# thread's ``count_runs`` is raised by the admission's own update of the thread (its insert trigger
# cost an extra thread-row update per run); its delete trigger stays. Postgres keeps its
# indexes and triggers (its queries bind the statuses as parameters, which a partial index's
# predicate cannot be proven against): nothing changes there.
INFLIGHT_RUNS = "status IN ('pending', 'running')"
"""The WHERE term of the partial indexes of in-flight runs (migration 6)."""
_SQLITE_V6 = (
    "DROP INDEX runs_status",
    "DROP INDEX runs_thread_status",
    f"CREATE INDEX runs_inflight ON runs (status, created_at, run_id) WHERE {INFLIGHT_RUNS}",
    "CREATE INDEX runs_thread_inflight ON runs (thread_id, created_at, run_id) "
    f"WHERE {INFLIGHT_RUNS}",
    "DROP TRIGGER runs_count_insert",
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        version=6,
        description="SQLite: partial indexes of in-flight runs, count_runs kept by admission",
        sqlite=_SQLITE_V6,
        postgres=(),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending(current: int, dialect: Dialect, masked_url: str) -> list[Migration]:
    """Migrations still to apply to a database at ``current``; refuse a newer database."""
    if current > LATEST_VERSION:
        raise SchemaVersionError(
            f"database {masked_url} has weft schema version {current}, but this weft knows "
            f"versions up to {LATEST_VERSION}: it was written by a newer weft. Upgrade weft "
            f"(pip install -U weft) or point WEFT_DATABASE_URL at another database."
        )
    return [m for m in MIGRATIONS if m.version > current]
