"""Results of dependency calls, recorded in the lineage so a run can be replayed without them.

Every read from the store and every answer of the carrier, payments service or model is kept
as a `result` event (dependency, action, arguments, the result as JSON) in the run's state.
`interlock replay` serves a run from these records instead of calling anything, the way
Temporal's replayer feeds recorded activity results to workflow code.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.state import Event
from tools.errors import DependencyError

if TYPE_CHECKING:
    from tools.governor import CallContext

T = TypeVar("T")

__all__ = ["RecordedResults", "Recorder", "ReplayMismatch", "ReplayRecorder", "decode", "encode",
           "raise_recorded_error", "record"]


class ReplayMismatch(Exception):
    """A replayed run asked for a result the recorded run never received."""

    def __init__(self, key: tuple[str | None, str, str, str]) -> None:
        step, dependency, action, args = key
        super().__init__(f"step {step}: no recorded {dependency}.{action}({args})")
        self.key = key


def encode(value: Any) -> Any:
    """A JSON-ready copy of a result (dataclasses keep their type name for `decode`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, datetime):
        return {"__type__": "datetime", "iso": iso(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return {"__type__": type(value).__name__, **value.model_dump(mode="json")}
    return value


def decode(value: Any, types: dict[str, Any]) -> Any:
    """The inverse of `encode`, given the classes it may meet by name."""
    if isinstance(value, list):
        return [decode(v, types) for v in value]
    if not isinstance(value, dict):
        return value
    name = value.get("__type__")
    if name == "datetime":
        return parse_iso(value["iso"])
    fields = {k: decode(v, types) for k, v in value.items() if k != "__type__"}
    if name is None:
        return fields
    cls = types[name]
    if hasattr(cls, "model_validate"):
        return cls.model_validate(fields)
    hints = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) and "tuple" in str(hints[k].type) else v
                  for k, v in fields.items()})


def _key(step_id: str | None, dependency: str, action: str, args: dict[str, Any]
         ) -> tuple[str | None, str, str, str]:
    return (step_id, dependency, action, json.dumps(args, sort_keys=True, default=str))


def record(events: list[Event] | None, clock: Clock, *, thread_id: str | None,
           step_id: str | None, dependency: str, action: str, args: dict[str, Any],
           result: Any) -> None:
    """Append a `result` event for one call (no-op without an events list)."""
    if events is None:
        return
    events.append(Event(at=iso(clock.now()), kind="result", dependency=dependency,
                        thread_id=thread_id, step_id=step_id,
                        detail={"action": action, "args": args, "result": encode(result)}))


class Recorder:
    """The one seam every recorded call passes: a live call runs, and its result is recorded.

    Clients, the store and the effects journal hand each call to `call` as a function that
    makes it.
    """

    writes = True
    """Whether what goes around the record (the journal noting an outcome) is written."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.types: dict[str, Any] = {}

    def learn(self, types: Iterable[type]) -> None:
        """Types results may be made of (a replay serves recorded results as these)."""
        self.types.update({t.__name__: t for t in types})

    async def call(self, ctx: CallContext | None, dependency: str, action: str,
                   args: dict[str, Any], run: Callable[[], Awaitable[T]]) -> T:
        """Run the call and record its result, or its failure, as a `result` event."""
        events = ctx.events if ctx is not None else None
        where = {"thread_id": ctx.thread_id if ctx else None,
                 "step_id": ctx.step_id if ctx else None}
        try:
            result = await run()
        except DependencyError as exc:
            record(events, self.clock, dependency=dependency, action=action, args=args,
                   result={"__error__": {"message": exc.message, "reason": exc.reason,
                                         "retryable": exc.retryable, "status": exc.status}},
                   **where)
            raise
        record(events, self.clock, dependency=dependency, action=action, args=args,
               result=result, **where)
        return result


class ReplayRecorder(Recorder):
    """Serves every call from a recorded run and runs none (`interlock replay`).

    A call the recorded run never made raises `ReplayMismatch`, which surfaces as a failed
    step and so as a difference in the determinism report. Served results are recorded again,
    so the replay's lineage matches the original's.
    """

    writes = False

    def __init__(self, results: RecordedResults, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.results = results

    async def call(self, ctx: CallContext | None, dependency: str, action: str,
                   args: dict[str, Any], run: Callable[[], Awaitable[T]]) -> T:
        """The recorded result of this call; the call itself is never made."""
        value = self.results.take(ctx.step_id if ctx else None, dependency, action, args)

        async def served() -> T:
            raise_recorded_error(dependency, value)
            result: T = decode(value, self.types)
            return result

        return await Recorder.call(self, ctx, dependency, action, args, served)


def raise_recorded_error(dependency: str, value: Any) -> None:
    """Raise the DependencyError a recorded failure stands for (no-op for a result)."""
    if isinstance(value, dict) and "__error__" in value:
        error = value["__error__"]
        raise DependencyError(error["message"].split(": ", 1)[-1], dependency=dependency,
                              retryable=error["retryable"], status=error["status"],
                              reason=error["reason"])


class RecordedResults:
    """Recorded results by call, served in the order they were recorded."""

    def __init__(self, events: Iterable[Event]) -> None:
        self._queues: dict[tuple[str | None, str, str, str], deque[Any]] = defaultdict(deque)
        self.decisions: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for event in events:
            detail = event["detail"]
            if event["kind"] == "result" and event["dependency"]:
                key = _key(event["step_id"], event["dependency"], detail["action"],
                           detail["args"])
                self._queues[key].append(detail["result"])
            elif event["kind"] == "decision" and event["step_id"]:
                self.decisions[event["step_id"]].append(detail)
        self.served = 0

    def take(self, step_id: str | None, dependency: str, action: str, args: dict[str, Any]
             ) -> Any:
        """The next recorded result of this call; ReplayMismatch if there is none."""
        key = _key(step_id, dependency, action, args)
        queue = self._queues.get(key)
        if not queue:
            raise ReplayMismatch(key)
        self.served += 1
        # The last recorded answer stays available: a replayed run may ask again (a retry).
        return queue.popleft() if len(queue) > 1 else queue[0]
