"""Code references: ``package.module:attribute`` or ``path/file.py:attribute``.

A reference names a module, by its import name or by the path of a Python file, and an
attribute path in it (``name`` or ``outer.inner``). :func:`parse_ref` splits the text,
:func:`load_ref` imports the module and walks the attribute path. Every failure is a
:class:`RefError` whose ``kind`` says what went wrong and whose ``cause`` is the exception
raised by the imported code, so that callers can word their own errors.

A file is imported under a unique module name (``<prefix>_<stem>_<digest of its path>``),
optionally with its folder on ``sys.path`` while it imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

RefErrorKind = Literal[
    "malformed", "file_missing", "module_missing", "import_failed", "attribute_missing"
]


class RefError(Exception):
    """A reference that is malformed or cannot be loaded.

    ``kind`` is one of ``malformed``, ``file_missing`` (the file does not exist or is a
    folder), ``module_missing`` (no module or parent package of that name),
    ``import_failed`` (the code raised ``cause``, or the file is not a Python file, with no
    ``cause``) and ``attribute_missing``. ``where`` is the reference text (malformed), the
    file or module concerned (file or module errors) or the place the attribute path was
    looked up in (attribute errors).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: RefErrorKind,
        where: str,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind: RefErrorKind = kind
        self.where = where
        self.cause = cause


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``module`` (an import name or a file path) and ``attr``."""

    module: str
    attr: str

    @property
    def is_file(self) -> bool:
        """Whether ``module`` is a file path (ends with ``.py`` or contains a separator)."""
        return self.module.endswith(".py") or "/" in self.module or "\\" in self.module

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


def parse_ref(text: str) -> Ref:
    """Split ``module:attr`` at its last colon; a missing or empty part is malformed.

    An attribute with a path separator is malformed too: the colon was a drive letter's.
    """
    module, sep, attr = text.rpartition(":")
    if not sep or not module or not attr or "/" in attr or "\\" in attr:
        raise RefError(
            f"{text!r} is not a reference; write 'package.module:attribute' or "
            "'path/file.py:attribute'",
            kind="malformed",
            where=text,
        )
    return Ref(module, attr)


def resolve_path(text: str, base_dir: Path | None = None) -> Path:
    """``text`` as a normalized absolute path; a relative one is taken against ``base_dir``
    (default: the current directory) and ``~`` is expanded."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def describe_exception(e: BaseException) -> str:
    """``Type: first line of the message``, or ``Type`` alone."""
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def import_module(name: str) -> ModuleType:
    """Import the module ``name``.

    RefError ``module_missing`` when neither it nor a parent package exists (``cause`` is
    the ModuleNotFoundError), ``import_failed`` when importing raised; then ``where`` is the
    module's file if its parent packages imported, else ``name``.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise RefError(
                f"no module named {name!r}", kind="module_missing", where=name, cause=e
            ) from e
        error: BaseException = e
    except (Exception, SystemExit) as e:  # noqa: BLE001 - reported as a RefError
        error = e
    where = _origin(name)
    raise RefError(
        f"importing {where} failed: {describe_exception(error)}",
        kind="import_failed",
        where=where,
        cause=error,
    ) from error


def _origin(name: str) -> str:
    """The file of the module ``name``, found without running code, or ``name``."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return name  # a parent package failed to import
    try:
        spec = importlib.util.find_spec(name)
    except (Exception, SystemExit):  # noqa: BLE001 - only a better name is at stake
        return name
    return spec.origin if spec is not None and spec.origin else name


def module_name(path: Path, prefix: str) -> str:
    """A module name unique to ``path``: ``<prefix>_<stem>_<digest>``."""
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    return f"{prefix}_{stem}_{digest}"


def import_file(path: Path, *, prefix: str = "weft_ref", on_sys_path: bool = False) -> ModuleType:
    """Import the Python file ``path`` under :func:`module_name`.

    With ``on_sys_path`` the file's folder is on ``sys.path`` while it imports, so that it
    can import its neighbours. RefError ``file_missing`` or ``import_failed``.
    """
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise RefError(f"file {path} {what}", kind="file_missing", where=str(path))
    name = module_name(path, prefix)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RefError(
            f"cannot import {path}: not a Python file", kind="import_failed", where=str(path)
        )
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    added = on_sys_path and folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        raise RefError(
            f"importing {path} failed: {describe_exception(e)}",
            kind="import_failed",
            where=str(path),
            cause=e,
        ) from e
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    return module


def load_module(
    ref: Ref,
    *,
    base_dir: Path | None = None,
    modules: MutableMapping[str, ModuleType] | None = None,
    prefix: str = "weft_ref",
    on_sys_path: bool = False,
) -> ModuleType:
    """The module ``ref`` names: a file (relative to ``base_dir``) or an importable module.

    ``modules`` caches imported files by their resolved path, one module object per file.
    """
    if not ref.is_file:
        return import_module(ref.module)
    path = resolve_path(ref.module, base_dir)
    key = str(path)
    if modules is not None and key in modules:
        return modules[key]
    module = import_file(path, prefix=prefix, on_sys_path=on_sys_path)
    if modules is not None:
        modules[key] = module
    return module


def get_attr(obj: Any, attr: str, *, where: str) -> Any:
    """Walk the dotted attribute path ``attr`` from ``obj``; RefError ``attribute_missing``
    names ``where`` (the module or file ``obj`` comes from) and the whole path."""
    value = obj
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise RefError(
                f"{where} has no attribute {attr!r}", kind="attribute_missing", where=where
            ) from None
    return value


def load_ref(
    ref: Ref | str,
    *,
    base_dir: Path | None = None,
    modules: MutableMapping[str, ModuleType] | None = None,
    prefix: str = "weft_ref",
    on_sys_path: bool = False,
) -> Any:
    """The object ``ref`` names; see :func:`load_module` and :func:`get_attr`.

    An attribute missing from a file names the file's resolved path, else the module name.
    """
    if isinstance(ref, str):
        ref = parse_ref(ref)
    module = load_module(
        ref, base_dir=base_dir, modules=modules, prefix=prefix, on_sys_path=on_sys_path
    )
    where = str(resolve_path(ref.module, base_dir)) if ref.is_file else ref.module
    return get_attr(module, ref.attr, where=where)


__all__ = [
    "Ref",
    "RefError",
    "describe_exception",
    "get_attr",
    "import_file",
    "import_module",
    "load_module",
    "load_ref",
    "module_name",
    "parse_ref",
    "resolve_path",
]
