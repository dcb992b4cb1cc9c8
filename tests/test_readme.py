"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_python_example_runs(code: str, tmp_path: Path) -> None:
    """Each block ends with ``# prints: ...`` lines: what its second run prints."""
    expected = re.findall(r"^# prints: (.*)$", code, flags=re.M)
    assert expected, "a README example must say what it prints"
    for _ in range(2):  # twice: a durable example continues the same thread
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == expected


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
