"""Several processes opening (and so migrating) one new SQLite file at the same moment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weft.storage.migrations import LATEST_VERSION, MIGRATIONS

OPEN = """
import asyncio, sys
from weft.storage import open_storage

async def main():
    sys.stdin.readline()
    async with open_storage(sys.argv[1]) as storage:
        await storage.store.aput(("p",), sys.argv[2], {"ok": True})
        print(await storage.schema_version(), flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, url, str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for p in procs:  # release them together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outcomes = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == str(LATEST_VERSION)
    import sqlite3

    conn = sqlite3.connect(tmp_path / "shared.db")
    assert conn.execute("SELECT COUNT(*) FROM weft_schema").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT COUNT(*) FROM store").fetchone()[0] == 6
    conn.close()
