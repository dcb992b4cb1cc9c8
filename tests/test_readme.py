"""The README's Python examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = README.parent / "examples"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert BLOCKS


SERVED = "http://127.0.0.1:2024"  # where README examples expect `make serve`


@contextmanager
def served_examples(tmp_path: Path) -> Iterator[str]:
    """``weft serve`` on examples/weft.yaml (a fresh database, a free port): its URL."""
    weft = Path(sys.executable).parent / "weft"
    proc = subprocess.Popen(
        [str(weft), "serve", "--config", str(EXAMPLES / "weft.yaml"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "WEFT_DATABASE_URL": f"sqlite:///{tmp_path}/w.db"},
    )
    try:
        assert proc.stdout is not None
        url = next(
            (m[1] for line in proc.stdout if (m := re.search(r"weft serving (http://\S+)", line))),
            None,
        )
        assert url, "weft serve did not start"
        for _ in range(600):
            try:
                httpx.get(f"{url}/ok")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_python_example_runs(code: str, tmp_path: Path) -> None:
    """Each block ends with ``# prints: ...`` lines: what its second run prints. A block
    that talks to ``make serve`` runs against ``weft serve`` on the examples."""
    expected = re.findall(r"^# prints: (.*)$", code, flags=re.M)
    assert expected, "a README example must say what it prints"
    with ExitStack() as stack:
        if SERVED in code:
            code = code.replace(SERVED, stack.enter_context(served_examples(tmp_path)))
        done = _run_twice(code, tmp_path)
    assert done.stdout.strip().splitlines() == expected


def _run_twice(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    for _ in range(2):  # twice: a durable example continues the same thread
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    return done


WORKFLOWS = [
    b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S) if "nodes:" in b
]
STEPS = README.parent / "examples" / "workflows" / "steps.py"


@pytest.mark.parametrize("text", WORKFLOWS)
def test_readme_workflow_example_validates(text: str, tmp_path: Path) -> None:
    from weft.workflows import validate_workflow_file

    (tmp_path / "steps.py").write_text(STEPS.read_text())
    path = tmp_path / "example.yaml"
    path.write_text(text)
    assert validate_workflow_file(path) == []
