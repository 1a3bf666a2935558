"""Scripted replies for a healthy run: an OpenAI-compatible model that follows a route.

A probe request takes a route (its number). Wherever the model is offered tools, the route
picks one of them, none, or (two or more offered, parallel calls allowed) all of them at once.
A model that has already called one of the tools it is offered answers in words, so every
agent loop ends. Structured output (`response_format` with a JSON
schema, or a forced tool call) gets an instance of the schema. Varying the route makes some
requests call a dependency and others not, which is what the isolation probe compares.
Any other host is answered 200 with a small JSON object.
"""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from typing import Any

from graphs.assess.intercept import Outbound, Reply

__all__ = ["MODEL_PATHS", "healthy", "is_model_call", "sample", "sample_type", "scripted_model"]

MODEL_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses", "/messages")
"""URL path endings of model APIs (OpenAI-compatible, and Anthropic's messages)."""

ANSWER = "Scripted reply from interlock assess."
"""What the scripted model says when it answers in words."""


def is_model_call(path: str) -> bool:
    """Whether a call goes to a model API."""
    return path.rstrip("/").endswith(MODEL_PATHS)


def sample(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0, *,
           every: bool = False) -> Any:
    """A small value that validates against a JSON schema (as far as its types say).

    `every`: fill the top object's optional properties too (a graph's input).
    """
    if not isinstance(schema, dict) or depth > 8:
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return sample(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample(options[0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties: dict[str, Any] = schema.get("properties") or {}
        required = list(properties) if every else schema.get("required", list(properties))
        return {name: sample(sub, defs, depth + 1) for name, sub in properties.items()
                if name in required}
    if kind == "array":
        least = int(schema.get("minItems", 0))
        return [sample(schema.get("items", {}), defs, depth + 1) for _ in range(least)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(max(1, schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    if kind == "string":
        return "probe" if "format" not in schema else {
            "date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01",
            "uri": "http://probe.example/"}.get(str(schema["format"]), "probe")
    return None


def sample_type(hint: Any, depth: int = 0) -> Any:
    """A small value of a Python type (a list gets two items, so a fan-out over it fans)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return sample_type(args[0], depth)
    if depth > 6 or hint is Any:
        return "probe"
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return sample_type(options[0], depth + 1) if options else None
    if origin is typing.Literal:
        return args[0]
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        item = sample_type(args[0], depth + 1) if args else "probe"
        return [item, item]
    if origin in (dict, collections.abc.Mapping):
        return {}
    if isinstance(hint, type):
        if issubclass(hint, bool):
            return False
        if issubclass(hint, int):
            return 1
        if issubclass(hint, float):
            return 1.0
        if issubclass(hint, str):
            return "probe"
        fields = _fields(hint)
        if fields is not None:
            return {name: sample_type(sub, depth + 1) for name, sub in fields.items()}
    return "probe"


def _fields(hint: type) -> dict[str, Any] | None:
    """The annotated fields of a TypedDict, dataclass or pydantic model (None otherwise)."""
    if typing.is_typeddict(hint) or hasattr(hint, "__dataclass_fields__") or hasattr(
            hint, "model_fields"):
        try:
            return typing.get_type_hints(hint, include_extras=True)
        except Exception:  # annotations that do not resolve
            return dict(getattr(hint, "__annotations__", {}))
    return None


def _called(messages: Any) -> set[str]:
    """Tool names the conversation's assistant turns have already called."""
    names: set[str] = set()
    for message in messages if isinstance(messages, list) else []:
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            if isinstance(call, dict):
                names.add(str((call.get("function") or {}).get("name", "")))
    return names


def _tool_calls(route: int, tools: list[dict[str, Any]], forced: Any, messages: Any,
                parallel: bool) -> list[dict[str, Any]]:
    """The tool calls the route makes here (none: answer in words).

    Of `k` tools offered, route `r` calls tool `r mod (k + 2)`, none at `k`, and every one at
    once at `k + 1` (parallel tool calls, where two or more are offered and the caller
    allows them).
    """
    functions = [t.get("function", {}) for t in tools if isinstance(t, dict)]
    names = [str(f.get("name", "")) for f in functions]
    if isinstance(forced, dict):
        wanted = (forced.get("function") or {}).get("name")
        chosen = [names.index(wanted) if wanted in names else 0]
    elif forced in ("required", "any") and functions:
        chosen = [route % len(functions)]
    else:
        if forced == "none" or not functions or _called(messages) & set(names):
            return []
        every = parallel and len(functions) > 1
        pick = route % (len(functions) + (2 if every else 1))
        if pick == len(functions):
            return []
        chosen = list(range(len(functions))) if pick > len(functions) else [pick]
    return [{"id": f"call_assess_{route}_{n}", "type": "function",
             "function": {"name": names[n], "arguments": json.dumps(
                 sample(functions[n].get("parameters", {})) or {})}} for n in chosen]


def _content(response_format: Any) -> str:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return json.dumps(sample(spec.get("schema", {})))
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return "{}"
    return ANSWER


def _stream(completion: dict[str, Any]) -> bytes:
    """The completion as the server-sent events of a streamed one."""
    choice = completion["choices"][0]
    delta: dict[str, Any] = {"role": "assistant", "content": choice["message"]["content"]}
    if choice["message"].get("tool_calls"):
        delta["tool_calls"] = [{"index": n, **one}
                               for n, one in enumerate(choice["message"]["tool_calls"])]
    chunks = [{"index": 0, "delta": delta, "finish_reason": None},
              {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]
    lines = [json.dumps({"id": completion["id"], "object": "chat.completion.chunk",
                         "created": 0, "model": completion["model"], "choices": [chunk]})
             for chunk in chunks]
    return "".join(f"data: {line}\n\n" for line in [*lines, "[DONE]"]).encode()


def scripted_model(call: Outbound) -> Reply:
    """An OpenAI-compatible answer to a model call, following the call's route."""
    body = call.body if isinstance(call.body, dict) else {}
    if call.path.rstrip("/").endswith("/embeddings"):
        given = body.get("input")
        count = len(given) if isinstance(given, list) else 1
        return 200, {"object": "list", "model": body.get("model", "probe"),
                     "data": [{"object": "embedding", "index": n, "embedding": [0.0] * 8}
                              for n in range(count)],
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}, {}
    if not call.path.rstrip("/").endswith("/chat/completions"):
        return 404, {"error": {"message": "interlock assess scripts chat completions only",
                               "type": "invalid_request_error"}}, {}
    offered = body.get("tools")
    tools: list[dict[str, Any]] = offered if isinstance(offered, list) else []
    calls = _tool_calls(call.route, tools, body.get("tool_choice"), body.get("messages"),
                        body.get("parallel_tool_calls") is not False)
    message: dict[str, Any] = {"role": "assistant",
                               "content": None if calls else _content(
                                   body.get("response_format"))}
    if calls:
        message["tool_calls"] = calls
    completion = {"id": f"chatcmpl-assess-{call.route}", "object": "chat.completion",
                  "created": 0, "model": body.get("model", "probe"),
                  "choices": [{"index": 0, "message": message,
                               "finish_reason": "tool_calls" if calls else "stop"}],
                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    if body.get("stream"):
        return 200, _stream(completion), {"content-type": "text/event-stream"}
    return 200, completion, {}


def healthy(call: Outbound) -> Reply:
    """Every dependency up: the model scripted, any other service a small JSON object."""
    if is_model_call(call.path):
        return scripted_model(call)
    return 200, {"status": "ok"}, {}
