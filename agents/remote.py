"""Remote workers: a LangGraph graph served elsewhere, as a governed Interlock worker.

The graph runs in its own environment or as another team's service. `remote_worker(...)`
declares both halves a team adds in one module (`INTERLOCK_EXTENSIONS`):
- a `Dependency` named for the worker, so the remote has its own breaker, timeout, bulkhead and
  retry budget (`INTERLOCK_DEP_<NAME>`) and its URL in `INTERLOCK_<NAME>_URL`;
- a `WorkerSpec` whose node calls the remote graph through the governor, with what is left of
  the request's deadline, and hands back its output as a worker report, which the fact guard
  validates like any other (kinds the worker owns, values against their schemas).

The call is the Agent Protocol's stateless `POST /runs/wait` (the LangGraph server, Aegra)
made with httpx, not `RemoteGraph`: langgraph_sdk's client retries on its own and takes no
per-attempt timeout, and the governor must be the only retry layer. It sends the graph
`{"step", "request": {"text", "turn"}, "known", "idempotency_key"}` (`text`: the customer's
words with personal data taken out; `known`: the facts of the steps it depends on; the key is
the same for every attempt, resume and replay of one step and what it asks, so a remote graph
with a side effect can make it once: the server does not deduplicate, the graph must) with
headers `Idempotency-Key`, `x-interlock-deadline-ms`, `x-interlock-thread` and
`x-interlock-step`, and reads from the run's final values
`{"status": "done" | "degraded" | "not_found", "facts": [{"kind", "subject", "value",
"source"}], "note"}`: facts about what the step asked only (`produces`), judged by the fact
guard; the remote's `note` is never shown to anyone (only checked facts reach the answer). A
remote that is down, slow or answering nonsense degrades its own step ("could not be
checked"); the rest of the plan carries on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel

from agents.base import WorkerDeps, WorkerSpec, call_context, make_fact, report, single_node_worker
from graphs.core.clock import iso
from graphs.core.state import Fact, InterlockContext, PlanStep, WorkerState
from tools.dependencies import Dependency, Wiring
from tools.errors import DependencyError
from tools.governor import CallContext
from tools.policy import DependencyPolicy

__all__ = ["RemoteWorkerClient", "remote_worker"]

_STATUSES = ("done", "degraded", "not_found")
_MIN_LEFT_MS = 1
_MAX_ANSWER_BYTES = 1024 * 1024
"""A remote answer larger than this is refused as outside the contract."""
_MAX_FACTS = 50


class RemoteWorkerClient:
    """Runs one step on the remote graph, through the governor (`Dependency.client`)."""

    def __init__(self, wiring: Wiring, graph_id: str, headers: Mapping[str, str]) -> None:
        self.name = wiring.name
        self._http = wiring.http
        self._governor = wiring.governor
        self._recorder = wiring.recorder
        self._clock = wiring.clock
        self._graph_id = graph_id
        self._headers = dict(headers)

    async def run(self, payload: dict[str, Any], ctx: CallContext, *,
                  idempotency_key: str) -> dict[str, Any]:
        """The remote graph's final values for one step (raises `DependencyError`)."""

        async def attempt(limit_s: float) -> dict[str, Any]:
            left = ctx.remaining(self._clock)
            headers = {**self._headers, "Idempotency-Key": idempotency_key,
                       "x-interlock-deadline-ms": str(max(_MIN_LEFT_MS, int(
                           1000 * min(limit_s, left if left is not None else limit_s)))),
                       "x-interlock-thread": ctx.thread_id or "",
                       "x-interlock-step": ctx.step_id or ""}
            answer = await self._http.get().post(
                "/runs/wait", json={"assistant_id": self._graph_id, "input": payload,
                                    "on_completion": "delete"},
                headers=headers, timeout=limit_s)
            status = answer.status_code
            if len(answer.content) > _MAX_ANSWER_BYTES:
                raise DependencyError("the remote graph's answer is too large",
                                      dependency=self.name, retryable=False,
                                      reason="malformed_output")
            if status >= 400:
                retryable = status in (408, 429) or status >= 500
                raise DependencyError(f"HTTP {status}", dependency=self.name,
                                      retryable=retryable, status=status,
                                      reason="unavailable" if retryable else "rejected")
            try:
                values = answer.json()
            except ValueError:
                values = None
            if isinstance(values, dict) and isinstance(failed := values.get("__error__"), dict):
                # The graph itself failed (its model refused, a bug): reported, not retried.
                raise DependencyError(
                    f"the remote graph's run failed: {str(failed.get('error'))[:80]}",
                    dependency=self.name, retryable=False, reason="run_failed")
            if not isinstance(values, dict) or "__error__" in values:
                raise DependencyError("the remote graph answered no values",
                                      dependency=self.name, retryable=False,
                                      reason="malformed_output")
            return values

        # Recorded like every dependency's result: a replay is served it, calling nothing.
        return await self._recorder.call(
            ctx, self.name, "run", {"idempotency_key": idempotency_key},
            lambda: self._governor.call(self.name, attempt, ctx, action="run"))


def _idempotency_key(state: WorkerState, payload: dict[str, Any], name: str) -> str:
    """The step's key, one per step and what it asks.

    Every attempt, resume and replay of the step shares it; a fork that asks something else at
    the same step does not.
    """
    request = state["request"]
    origin = request.get("origin") or request["message_id"]
    asked = json.dumps({"step": payload["step"], "request": payload["request"]},
                       sort_keys=True, default=str)
    return "il-" + hashlib.sha256(f"{name}|{origin}|{asked}".encode()).hexdigest()[:40]


def remote_worker(*, name: str, graph_id: str, description: str,
                  owns: Mapping[str, type[BaseModel]], version: str = "remote",
                  policy: DependencyPolicy | None = None,
                  headers: Mapping[str, str] | None = None,
                  degraded_fact: Callable[[PlanStep], tuple[str, str, BaseModel]] | None = None,
                  **spec: Any) -> tuple[Dependency, WorkerSpec]:
    """The dependency and the worker for a remote graph (`spec`: more `WorkerSpec` fields).

    `degraded_fact(step)` (optional) gives `(kind, subject, value)` of the fact a step reports
    when the remote could not be reached, so the answer can say what was not checked.
    """
    dependency = Dependency(
        name=name, description=f"Remote worker graph {graph_id!r} ({description})",
        policy=policy or DependencyPolicy(timeout=10.0, attempts=2, fail_max=3),
        client=lambda wiring: RemoteWorkerClient(wiring, graph_id, headers or {}),
        simulated_by_default=False)

    def build(deps: WorkerDeps) -> Any:
        client: RemoteWorkerClient = deps.toolbox.client(name)

        async def run_remote(state: WorkerState, runtime: Runtime[InterlockContext]) -> Any:
            step = state["step"]
            ctx = call_context(state, deps.toolbox, runtime)
            now = deps.toolbox.clock.now()
            payload: dict[str, Any] = {
                "step": dict(step), "known": dict(state["facts"]),
                "request": {"text": deps.redact(state["request"]["text"]),
                            "turn": state["request"]["turn"]}}
            key = payload["idempotency_key"] = _idempotency_key(state, payload, name)
            try:
                values = await client.run(payload, ctx, idempotency_key=key)
            except DependencyError as exc:
                facts = []
                if degraded_fact is not None:
                    kind, subject, value = degraded_fact(step)
                    facts.append(make_fact(worker, step, kind=kind, subject=subject,
                                           value=value, source=name, as_of=now))
                return report(worker, step, "degraded", facts, degraded=[name],
                              note=f"{name} unavailable ({exc.reason})", events=ctx.events)
            status = values.get("status")
            said = values.get("facts")
            if status not in _STATUSES or not isinstance(said, list) or len(said) > _MAX_FACTS:
                return report(worker, step, "failed", [], degraded=[name],
                              note=f"{name} answered outside its contract", events=ctx.events)
            facts = [_fact(worker, step, item, name, now) for item in said]
            # Only what this step asked: a remote answering about other subjects as well would
            # have those reused later without being asked.
            asked = set(worker.produces(step)) if worker.produces is not None else None
            if asked is not None and any(f["id"] not in asked and f["kind"] in worker.owns
                                         for f in facts):  # other kinds: the fact guard's
                return report(worker, step, "failed", [], degraded=[name],
                              note=f"{name} answered about what it was not asked",
                              events=ctx.events)
            # The remote's own words (`note`) never reach the answer: only facts the guards
            # check do. The note is ours.
            return report(worker, step, status, facts,
                          degraded=[name] if status == "degraded" else [],
                          note=f"answered by {name}" if status == "done" else
                          f"{name} reported {status}", events=ctx.events)

        return single_node_worker(worker, run_remote)

    worker = WorkerSpec(name=name, version=version, description=description, owns=owns,
                        build=build, **spec)
    return dependency, worker


def _fact(worker: WorkerSpec, step: PlanStep, item: Any, source: str, now: datetime) -> Fact:
    """A fact as the remote said it, with Interlock's provenance.

    The fact guard judges it (kinds the worker owns, values against their schemas) and records
    its verdict; a value that fits its schema is stored complete, as a local worker's is.
    """
    said = item if isinstance(item, dict) else {"value": item}
    kind, subject = str(said.get("kind")), str(said.get("subject"))
    value: Any = said.get("value")
    if (schema := worker.owns.get(kind)) is not None:
        try:  # as a local worker's: every field, defaults included
            value = schema.model_validate(value).model_dump(mode="json")
        except ValueError:
            pass  # as said: the fact guard refuses it, with its reasons
    return Fact(id=f"{kind}:{subject}", kind=kind, subject=subject, value=value,
                source=f"{source}:{said.get('source') or 'remote'}", version=None,
                as_of=iso(now), worker=worker.name, worker_version=worker.version,
                step_id=step["id"], scope="")
