"""What `interlock assess` assesses: `file.py:attr`, `package.module:attr` or a langgraph.json.

The attribute may be a compiled graph, a `StateGraph` (compiled here, as its owner would), or a
function returning either, sync or async (called with no arguments, or with a config holding an
empty `configurable` when it takes one, as the LangGraph server calls a graph factory). A file's
folder stays on `sys.path`, so its nodes' own imports of sibling modules work when they run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from graphs.core.errors import InputError

__all__ = ["load_targets"]


def _module(spec: str) -> Any:
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise InputError(f"No such file: {spec}.", field="target")
        name = f"_interlock_assess_{abs(hash(str(path)))}"
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or loader.loader is None:
            raise InputError(f"Cannot load {spec} as a Python module.", field="target")
        module = importlib.util.module_from_spec(loader)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        try:
            sys.modules[name] = module
            loader.loader.exec_module(module)
        except Exception as exc:  # their module failed to load: say so, no traceback
            raise InputError(f"Loading {spec} failed: {type(exc).__name__}: {exc}.",
                             field="target") from None
        return module
    try:
        return importlib.import_module(spec)
    except Exception as exc:
        raise InputError(f"Cannot import {spec}: {type(exc).__name__}: {exc}.",
                         field="target") from None


def _await(made: Any) -> Any:
    """An async factory's graph, built on a loop of its own (the caller's may be running)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        async def build() -> Any:
            return await made

        return pool.submit(asyncio.run, build()).result()


def _graph(value: Any, where: str) -> Pregel[Any, Any, Any, Any]:
    """A compiled graph from what `where` names."""
    if isinstance(value, Pregel):
        return value
    if isinstance(value, StateGraph):
        return value.compile()
    if callable(value):
        takes = [p for p in inspect.signature(value).parameters.values()
                 if p.default is inspect.Parameter.empty
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        try:
            made = value({"configurable": {}}) if takes else value()
            if inspect.isawaitable(made):
                made = _await(made)
        except Exception as exc:
            raise InputError(f"{where} failed to build the graph: {type(exc).__name__}: "
                             f"{exc}.", field="target") from None
        if isinstance(made, Pregel | StateGraph):
            return _graph(made, where)
    raise InputError(f"{where} is not a LangGraph graph, a StateGraph, or a function that "
                     f"returns one.", field="target")


def load_targets(target: str) -> list[tuple[str, Pregel[Any, Any, Any, Any]]]:
    """`(name, compiled graph)` of each graph `target` names; InputError if it cannot load."""
    if target.endswith(".json"):
        path = Path(target)
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read {target}: {exc}.", field="target") from None
        graphs = config.get("graphs") if isinstance(config, dict) else None
        if not isinstance(graphs, dict) or not graphs:
            raise InputError(f"{target} names no graphs.", field="target")
        found: list[tuple[str, Pregel[Any, Any, Any, Any]]] = []
        for name, spec in graphs.items():
            ref = spec if isinstance(spec, str) else (spec or {}).get("path", "")
            file, _, attr = str(ref).partition(":")
            where = str((path.parent / file).resolve()) if file.endswith(".py") else file
            found.append((name, _graph(getattr(_module(where), attr, None), f"{name} ({ref})")))
        return found
    file, sep, attr = target.rpartition(":")
    if not sep or not file or not attr:
        raise InputError("Name the graph as path/to/file.py:attr, package.module:attr or a "
                         "langgraph.json.", field="target")
    module = _module(file)
    if not hasattr(module, attr):
        raise InputError(f"{file} has no attribute {attr!r}.", field="target")
    return [(attr, _graph(getattr(module, attr), target))]
