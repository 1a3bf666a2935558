"""The trace probe: what a LangSmith trace of the graph would hold, caught before it leaves.

Tracing is on for the probe's runs, through the LangSmith client the graph itself set up
(`langsmith.configure(client=...)`, with its anonymizer or hidden inputs) or, if it set none,
the default client the environment would give. Whichever it is, its HTTP session answers
in-process (`_Catch`): every batch the client would send to LangSmith is caught and parsed,
so the check reads exactly what would leave the machine, redaction included.

Two checks. Every model and tool call the graph made (each outbound HTTP call) happened inside
a model or tool span, whose parents lead to the run's root through the node that made it. And
personal data put into the input (an email, a phone number, a card number) is nowhere in what
was caught.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import os
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from graphs.assess.intercept import Call

__all__ = ["PERSONAL", "Caught", "Span", "calls_finding", "catching", "redaction_finding",
           "traced_load", "with_personal_data"]

PERSONAL = {"email": "jane.doe@example.com", "phone": "+1 415 555 0134",
            "card": "4111 1111 1111 1111"}
"""Personal data the probe sends in its input, by kind."""

_SPANS = ("llm", "tool", "retriever", "embedding")
"""Run types that stand for a model or a tool call."""


def _forms(kind: str, value: str) -> list[str]:
    """How `value` may appear in a trace: as given, and its digits run together or dashed."""
    if kind == "email":
        return [value]
    digits = "".join(ch for ch in value if ch.isdigit())
    return [value, digits, value.replace(" ", "-"), value.replace(" ", "")]


def with_personal_data(given: Any) -> tuple[Any, bool]:
    """`given` with personal data added to its first text (its last user message, if any).

    Returns the new input and whether there was any text to add it to.
    """
    said = (f" (I am Jane Doe, {PERSONAL['email']}, phone {PERSONAL['phone']}, card "
            f"{PERSONAL['card']})")
    if isinstance(given, dict) and isinstance(given.get("messages"), list) and given["messages"]:
        messages = list(given["messages"])
        last = messages[-1]
        if isinstance(last, dict) and isinstance(last.get("content"), str):
            messages[-1] = {**last, "content": last["content"] + said}
            return {**given, "messages": messages}, True
        if isinstance(last, tuple | list) and len(last) == 2 and isinstance(last[1], str):
            messages[-1] = (last[0], last[1] + said)
            return {**given, "messages": messages}, True
        if isinstance(getattr(last, "content", None), str):
            messages[-1] = last.model_copy(update={"content": last.content + said})
            return {**given, "messages": messages}, True
    if isinstance(given, str):
        return given + said, True
    if isinstance(given, dict):
        for key, value in given.items():
            changed, done = with_personal_data(value)
            if done:
                return {**given, key: changed}, True
    if isinstance(given, list):
        for n, value in enumerate(given):
            changed, done = with_personal_data(value)
            if done:
                return [*given[:n], changed, *given[n + 1:]], True
    return given, False


@dataclass(slots=True)
class Span:
    """One run of the caught trace."""

    id: str
    name: str = ""
    run_type: str = ""
    parent: str | None = None
    trace: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Caught:
    """Everything the LangSmith client tried to send while catching."""

    spans: dict[str, Span] = field(default_factory=dict)
    """The runs, by id, posts and patches merged."""
    text: list[tuple[str | None, str]] = field(default_factory=list)
    """Every payload as sent (decoded), with the run it belongs to, to search."""
    requests: int = 0
    """Requests the client made."""

    def merge(self, run: dict[str, Any]) -> None:
        """Add a run's post or patch."""
        if not isinstance(run, dict) or "id" not in run:
            return
        span = self.spans.setdefault(str(run["id"]), Span(id=str(run["id"])))
        span.name = str(run.get("name") or span.name)
        span.run_type = str(run.get("run_type") or span.run_type)
        if run.get("parent_run_id"):
            span.parent = str(run["parent_run_id"])
        if run.get("trace_id"):
            span.trace = str(run["trace_id"])
        for attr, key in (("start", "start_time"), ("end", "end_time")):
            if isinstance(run.get(key), str):
                setattr(span, attr, datetime.fromisoformat(run[key].replace("Z", "+00:00")))
        meta = (run.get("extra") or {}).get("metadata") if isinstance(run.get("extra"),
                                                                      dict) else None
        if isinstance(meta, dict):
            span.metadata.update(meta)

    def take(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        """Parse one request the client made."""
        self.requests += 1
        encoding = headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "zstd":
            import zstandard
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        kind = headers.get("content-type", "")
        if kind.startswith("multipart/"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + body)
            for part in message.iter_parts():
                name = str(part.get_param("name", header="content-disposition") or "")
                raw = part.get_payload(decode=True) or b""
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                kind_id_field = name.split(".", 2)
                self.text.append((kind_id_field[1] if len(kind_id_field) > 1 else None, text))
                if len(kind_id_field) == 2 and kind_id_field[0] in ("post", "patch"):
                    self._json(text, lambda v, i=kind_id_field[1]: self.merge({**v, "id": i}))
                elif len(kind_id_field) == 3 and kind_id_field[2] == "extra":
                    self._json(text, lambda v, i=kind_id_field[1]: self.merge(
                        {"id": i, "extra": v}))
            return
        text = body.decode(errors="replace")
        if method in ("POST", "PATCH") and "/runs" in url:
            self._json(text, lambda v: self._runs(v, url))
        else:
            self.text.append((None, text))

    def _runs(self, value: Any, url: str) -> None:
        if isinstance(value, dict) and ("post" in value or "patch" in value):
            runs = [*value.get("post", []), *value.get("patch", [])]
        elif isinstance(value, dict):
            tail = url.rstrip("/").rsplit("/runs/", 1)
            runs = [{**value, "id": value.get("id", tail[-1] if len(tail) == 2 else "")}]
        else:
            runs = []
        for run in runs:
            self.merge(run)
            self.text.append((str(run.get("id")) if isinstance(run, dict) else None,
                              json.dumps(run, default=str)))

    @staticmethod
    def _json(text: str, then: Any) -> None:
        try:
            value = json.loads(text)
        except ValueError:
            return
        then(value)


class _Catch(requests.adapters.BaseAdapter):
    """A requests adapter that answers the LangSmith client in-process and keeps its batches."""

    def __init__(self, caught: Caught) -> None:
        super().__init__()
        self.caught = caught

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        body: Any = request.body
        if hasattr(body, "read"):
            body = body.read()
        elif body is not None and not isinstance(body, bytes | str):
            body = b"".join(c if isinstance(c, bytes) else str(c).encode() for c in body)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        self.caught.take(str(request.method), str(request.url),
                         {str(k).lower(): str(v) for k, v in request.headers.items()}, raw)
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.headers["content-type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close."""


_TRACING_ENV = {"LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "lsv2-interlock-assess",
                "LANGSMITH_PROJECT": "interlock-assess",
                "LANGSMITH_DISABLE_RUN_COMPRESSION": "true"}
"""What the graph sees while loaded for the trace probe: tracing on, as in production."""


def _forget_env(ls_utils: Any) -> None:
    """Drop what LangSmith cached of the environment (it reads each variable once)."""
    ls_utils.get_env_var.cache_clear()


@contextmanager
def traced_load() -> Iterator[None]:
    """Tracing on in the environment while a graph is loaded and probed; all put back after.

    A graph that sets up its own LangSmith client when tracing is on (Interlock does, with an
    anonymizer) does so now, as it would in production; LangSmith's global client and switch
    are restored afterwards.
    """
    from langsmith import client as ls_client
    from langsmith import run_trees
    from langsmith import utils as ls_utils
    from langsmith._internal import _context

    saved_env = {k: os.environ.get(k) for k in _TRACING_ENV}
    saved = (run_trees._CLIENT, _context._GLOBAL_TRACING_ENABLED)
    token = _context._TRACING_ENABLED.set(_context._TRACING_ENABLED.get())
    os.environ.update(_TRACING_ENV)
    _forget_env(ls_utils)
    made: list[weakref.ref[Any]] = []
    real_init = ls_client.Client.__init__

    def init(client: Any, *args: Any, **kwargs: Any) -> None:
        real_init(client, *args, **kwargs)
        made.append(weakref.ref(client))

    ls_client.Client.__init__ = init  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ls_client.Client.__init__ = real_init  # type: ignore[method-assign]
        # The graph's own clients (one per load) outlive the assessment: whatever their
        # background threads still send is answered here and dropped, never sent.
        for ref in made:
            if (client := ref()) is not None and client is not saved[0]:
                for prefix in ("http://", "https://"):
                    client.session.mount(prefix, _Catch(Caught()))
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _forget_env(ls_utils)
        run_trees._CLIENT, _context._GLOBAL_TRACING_ENABLED = saved
        _context._TRACING_ENABLED.reset(token)


@contextmanager
def catching() -> Iterator[Caught]:
    """Trace what runs inside through the graph's LangSmith client, caught in-process."""
    import logging

    import langsmith
    from langsmith import Client, run_trees
    from langsmith.schemas import LangSmithInfo

    caught = Caught()
    adapter = _Catch(caught)
    quiet = logging.getLogger("langsmith")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    mine = run_trees._CLIENT is None
    client = run_trees._CLIENT or Client(api_key=_TRACING_ENV["LANGSMITH_API_KEY"],
                                         info=LangSmithInfo(version="interlock-assess"))
    run_trees._CLIENT = client
    mounts = dict(client.session.adapters)
    for prefix in ("http://", "https://"):
        client.session.mount(prefix, adapter)
    try:
        with langsmith.tracing_context(enabled=True):
            yield caught
    finally:
        try:
            from langchain_core.tracers.langchain import wait_for_all_tracers
            wait_for_all_tracers()
            client.flush()
        finally:
            client.session.adapters.clear()
            client.session.adapters.update(mounts)
            quiet.setLevel(level)
            if mine:
                run_trees._CLIENT = None


def _ancestry(spans: dict[str, Span], span: Span) -> tuple[list[Span], bool]:
    """The span's chain up to its root; False if a parent was never sent."""
    chain, seen = [span], {span.id}
    while chain[-1].parent is not None:
        parent = spans.get(chain[-1].parent)
        if parent is None or parent.id in seen:
            return chain, False
        chain.append(parent)
        seen.add(parent.id)
    return chain, True


def _node(chain: Sequence[Span]) -> str | None:
    return next((str(s.metadata["langgraph_node"]) for s in chain
                 if s.metadata.get("langgraph_node")), None)


def _covered(call: Call, spans: dict[str, Span]) -> Span | None:
    """The model or tool span `call` was made in, if any."""
    for run_id in call.traced_in:
        if (span := spans.get(run_id)) is not None and span.run_type in _SPANS:
            return span
    context = set(call.traced_in)
    for span in spans.values():
        if span.run_type not in _SPANS or span.start is None or call.at < span.start:
            continue
        if span.end is not None and call.at > span.end:
            continue
        chain, _ = _ancestry(spans, span)
        if context & {s.id for s in chain}:
            return span
    return None


def calls_finding(caught: Caught, calls: Sequence[Call], roots: int, *,
                  prefix: str = "") -> Any:
    """Every model and tool call is a span under its node and the run's root."""
    from graphs.assess.scorecard import Finding

    check, title = f"{prefix}traces.calls", "model and tool calls are spans under their node"
    spans = caught.spans
    if not spans:
        return Finding(id=check, area="traces", title=title, status="fail",
                       evidence=f"tracing was on for {roots} requests and no span reached "
                                f"the LangSmith client: the runs are not traced",
                       figure=0, fix="trace the graph: LANGSMITH_TRACING=true and a LangSmith "
                                     "client (or LangChain callbacks) on every run")
    tops = [s for s in spans.values() if s.parent is None]
    work = [s for s in spans.values() if s.run_type in _SPANS]
    problems: list[str] = []
    uncovered = [c for c in calls if _covered(c, spans) is None]
    for call in uncovered[:3]:
        where = next((_node(_ancestry(spans, spans[i])[0]) for i in call.traced_in
                      if i in spans), None)
        problems.append(f"a call to {call.host}{call.path} was made outside any model or tool "
                        f"span" + (f" (in node {where})" if where else " (in no traced run)"))
    for span in work:
        chain, whole = _ancestry(spans, span)
        if not whole:
            problems.append(f"{span.run_type} span {span.name!r}: a parent was never traced")
        elif len(tops) > roots and chain[-1] in tops and _node(chain) is None:
            problems.append(f"{span.run_type} span {span.name!r} is a trace of its own, not "
                            f"under the run's root")
        elif _node(chain) is None:
            problems.append(f"{span.run_type} span {span.name!r} names no node")
    problems = list(dict.fromkeys(problems))
    hosts = sorted({c.host for c in calls})
    if not calls and not work:
        return Finding(id=check, area="traces", title=title, status="n/a",
                       evidence=f"{len(spans)} spans in {len(tops)} traces and no model or "
                                f"tool call to check", figure=0)
    counted = (f"{len(calls)} outbound call{'s' * (len(calls) != 1)} ({', '.join(hosts)}) "
               f"and {len(work)} model and tool spans in {len(tops)} traces of {roots} "
               f"requests" if calls else
               f"{len(work)} model and tool spans (no outbound HTTP call) in {len(tops)} traces "
               f"of {roots} requests")
    if problems:
        return Finding(id=check, area="traces", title=title, status="fail",
                       evidence=f"{counted}: {'; '.join(problems[:5])}"
                                + (f" (and {len(problems) - 5} more)" if len(problems) > 5
                                   else ""), figure=len(uncovered) + len(problems[3:]),
                       fix="make every call a span in the run's context: call models through "
                           "LangChain chat models and tools as LangChain tools (or wrap them "
                           "in @traceable(run_type='tool')), and pass the node's config on "
                           "(no new threads or event loops without it)")
    nodes = sorted({n for s in work if (n := _node(_ancestry(spans, s)[0]))})
    return Finding(id=check, area="traces", title=title, status="pass",
                   evidence=f"{counted}: each call inside a model or tool span, each span "
                            f"under the run's root through its node ({', '.join(nodes[:6])})",
                   figure=0)


def redaction_finding(caught: Caught, *, sent: bool, prefix: str = "") -> Any:
    """Personal data sent in the input is nowhere in the caught trace."""
    from graphs.assess.scorecard import Finding

    check, title = f"{prefix}traces.redaction", "personal data stays out of the trace"
    if not sent:
        return Finding(id=check, area="traces", title=title, status="n/a",
                       evidence="the input has no text to put personal data in")
    if not caught.spans:
        return Finding(id=check, area="traces", title=title, status="n/a",
                       evidence="no trace was caught to look in")
    leaked: dict[str, str] = {}
    holders: set[str] = set()
    for kind, value in PERSONAL.items():
        for run_id, text in caught.text:
            form = next((f for f in _forms(kind, value) if f in text), None)
            if form:
                leaked.setdefault(kind, form)
                span = caught.spans.get(run_id or "")
                if span is not None:
                    holders.add(f"{span.run_type} {span.name!r}")
    if leaked:
        return Finding(id=check, area="traces", title=title, status="fail",
                       evidence=f"the input carried an email, a phone number and a card "
                                f"number; the trace LangSmith would receive holds the "
                                f"{', '.join(leaked)} "
                                f"({', '.join(repr(f) for f in leaked.values())})"
                                + (f", in {len(holders)} spans: {', '.join(sorted(holders)[:5])}"
                                   if holders else ""),
                       figure=len(leaked),
                       fix="redact before traces leave: langsmith.configure(client=Client("
                           "anonymizer=...)) with rules for emails, phone and card numbers, or "
                           "hide_inputs/hide_outputs")
    return Finding(id=check, area="traces", title=title, status="pass",
                   evidence=f"the input carried an email, a phone number and a card number; "
                            f"none of them is in the {len(caught.spans)} spans LangSmith "
                            f"would receive", figure=0)
