"""Code references: parse_ref and load_ref, and the kind and message of each RefError."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from weft.refs import Ref, RefError, load_ref, parse_ref


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- parse_ref -----------------------------------------------------------------------------------


def test_parse_a_module_reference() -> None:
    ref = parse_ref("package.module:outer.inner")
    assert ref == Ref("package.module", "outer.inner")
    assert not ref.is_file
    assert str(ref) == "package.module:outer.inner"


@pytest.mark.parametrize(
    ("text", "module"),
    [
        ("path/file.py:fn", "path/file.py"),
        ("file.py:fn", "file.py"),
        ("C:\\lib\\nodes.py:fn", "C:\\lib\\nodes.py"),
        ("/abs/lib/nodes:fn", "/abs/lib/nodes"),
    ],
)
def test_parse_a_file_reference(text: str, module: str) -> None:
    ref = parse_ref(text)
    assert ref == Ref(module, "fn")
    assert ref.is_file


@pytest.mark.parametrize("text", ["module", "module:", ":attr", "", "C:/lib/graph.py"])
def test_a_malformed_reference(text: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    assert info.value.kind == "malformed"
    assert info.value.where == text
    assert str(info.value) == (
        f"{text!r} is not a reference; write 'package.module:attribute' or 'path/file.py:attribute'"
    )


# --- load_ref ------------------------------------------------------------------------------------


def test_load_a_module_reference() -> None:
    assert load_ref("json:dumps") is json.dumps
    assert load_ref(parse_ref("os.path:join")) is os.path.join


def test_load_a_dotted_attribute() -> None:
    assert load_ref("json:JSONDecoder.decode") is json.JSONDecoder.decode


def test_load_a_file_reference_relative_to_base_dir(tmp_path: Path) -> None:
    write(
        tmp_path / "lib" / "funcs.py",
        "class Box:\n    VALUE = 7\n\ndef double(x):\n    return 2 * x\n",
    )
    double = load_ref("lib/funcs.py:double", base_dir=tmp_path)
    assert double(4) == 8
    assert load_ref("lib/../lib/funcs.py:Box.VALUE", base_dir=tmp_path) == 7
    module = sys.modules[double.__module__]
    assert module.__file__ == str(tmp_path / "lib" / "funcs.py")
    assert double.__module__.startswith("weft_ref_funcs_")


def test_a_file_is_imported_once_per_cache(tmp_path: Path) -> None:
    write(tmp_path / "counted.py", "SEEN = object()\n")
    modules: dict[str, ModuleType] = {}
    first = load_ref("counted.py:SEEN", base_dir=tmp_path, modules=modules)
    again = load_ref("./counted.py:SEEN", base_dir=tmp_path, modules=modules)
    assert first is again
    assert list(modules) == [str(tmp_path / "counted.py")]
    assert load_ref("counted.py:SEEN", base_dir=tmp_path) is not first


def test_a_file_can_import_its_neighbours_only_on_sys_path(tmp_path: Path) -> None:
    write(tmp_path / "weft_refs_neighbour.py", "VALUE = 3\n")
    write(tmp_path / "uses.py", "from weft_refs_neighbour import VALUE\n")
    with pytest.raises(RefError) as info:
        load_ref("uses.py:VALUE", base_dir=tmp_path)
    assert info.value.kind == "import_failed"
    assert load_ref("uses.py:VALUE", base_dir=tmp_path, on_sys_path=True) == 3
    assert str(tmp_path) not in sys.path


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RefError) as info:
        load_ref("nope/gone.py:fn", base_dir=tmp_path)
    assert info.value.kind == "file_missing"
    assert str(info.value) == f"file {tmp_path / 'nope' / 'gone.py'} does not exist"
    (tmp_path / "folder.py").mkdir()
    with pytest.raises(RefError) as info:
        load_ref("folder.py:fn", base_dir=tmp_path)
    assert info.value.kind == "file_missing"
    assert str(info.value) == f"file {tmp_path / 'folder.py'} is a folder, not a file"


def test_a_file_that_is_not_python(tmp_path: Path) -> None:
    write(tmp_path / "notes/readme.txt", "hello\n")
    with pytest.raises(RefError) as info:
        load_ref("notes/readme.txt:fn", base_dir=tmp_path)
    assert info.value.kind == "import_failed"
    assert info.value.cause is None
    assert (
        str(info.value) == f"cannot import {tmp_path / 'notes' / 'readme.txt'}: not a Python file"
    )


def test_a_file_that_fails_to_import(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.py", "VALUE = 1 / 0\n")
    with pytest.raises(RefError) as info:
        load_ref("broken.py:VALUE", base_dir=tmp_path)
    assert info.value.kind == "import_failed"
    assert info.value.where == str(path)
    assert isinstance(info.value.cause, ZeroDivisionError)
    assert str(info.value) == f"importing {path} failed: ZeroDivisionError: division by zero"
    assert not [name for name in sys.modules if name.startswith("weft_ref_broken_")]


def test_a_missing_module() -> None:
    with pytest.raises(RefError) as info:
        load_ref("no_such_pkg_weft_refs.inner:fn")
    assert info.value.kind == "module_missing"
    assert str(info.value) == "no module named 'no_such_pkg_weft_refs.inner'"
    assert isinstance(info.value.cause, ModuleNotFoundError)
    assert str(info.value.cause) == "No module named 'no_such_pkg_weft_refs'"
    with pytest.raises(RefError) as info:
        load_ref("json.no_such_submodule:fn")
    assert info.value.kind == "module_missing"
    assert str(info.value.cause) == "No module named 'json.no_such_submodule'"


def test_a_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "weft_refs_pkg" / "broken.py", "import no_such_module_weft_refs\n")
    write(tmp_path / "weft_refs_pkg" / "__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RefError) as info:
        load_ref("weft_refs_pkg.broken:fn")
    assert info.value.kind == "import_failed"
    assert info.value.where == str(path)
    assert str(info.value) == (
        f"importing {path} failed: ModuleNotFoundError: No module named 'no_such_module_weft_refs'"
    )


def test_a_missing_attribute(tmp_path: Path) -> None:
    write(tmp_path / "fine.py", "class Box:\n    pass\n")
    with pytest.raises(RefError) as info:
        load_ref("fine.py:Box.missing", base_dir=tmp_path)
    assert info.value.kind == "attribute_missing"
    assert str(info.value) == f"{tmp_path / 'fine.py'} has no attribute 'Box.missing'"
    with pytest.raises(RefError) as info:
        load_ref("json:no_such_function")
    assert info.value.kind == "attribute_missing"
    assert str(info.value) == "json has no attribute 'no_such_function'"
