"""YAML workflows: the file format, its validation, and compilation to a LangGraph graph.

Chat models and tools (the ``llm`` and ``tools`` node kinds) live in
:mod:`weft.workflows.models` and :mod:`weft.workflows.tools`; they are imported only when a
workflow that uses them is compiled.
"""

from __future__ import annotations

from weft.workflows.compiler import compile_workflow, state_schema
from weft.workflows.expressions import Expression, Template
from weft.workflows.loading import WorkflowError, load_workflow, validate_workflow_file
from weft.workflows.spec import WorkflowSpec

__all__ = [
    "Expression",
    "Template",
    "WorkflowError",
    "WorkflowSpec",
    "compile_workflow",
    "load_workflow",
    "state_schema",
    "validate_workflow_file",
]
