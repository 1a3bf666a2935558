"""Governed adapters for code a team has already: an httpx transport, a tool, a chat model.

Each makes every call go through the governor under a registered dependency's name (its
breaker, retry budget, bulkhead, per-attempt timeout, the caller's deadline, and events), and
refuses to wrap anything that retries on its own: retries belong to the governor alone.

- `GovernedTransport(dependency, governor, inner)`: an `httpx.AsyncBaseTransport`; give it to
  any `httpx.AsyncClient(transport=...)`. A request the governor refuses (breaker open, budget
  spent, deadline) raises `GovernedRefusal` (an `httpx.TransportError`); one that keeps failing
  returns the dependency's last answer, as a client without the governor would see it.
- `governed_tool(tool, dependency, governor)`: a LangChain tool whose calls are governed.
- `GovernedChatModel(inner=..., dependency=..., governor=...)`: a chat model (LangChain
  `BaseChatModel`) whose generations are governed; `bind_tools` and structured output keep
  going through it.

A call's deadline and where its events go come from `calling(ctx)`: `with calling(ctx): ...`
around the code that calls (a worker node, with its step's `CallContext`).

Given the toolbox's `recorder` (`recorder=toolbox.recorder`, or `wiring.recorder` in a
dependency's client), each adapter records every call's result at the one seam, so
`interlock replay` serves it from the record and calls nothing. Without one, a replay's
governor (`toolbox.governor` of the replay) refuses the call and counts it, so the step fails
and the replay reports the difference; a call made through some other governor goes out.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Self

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables.retry import RunnableRetry
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import ConfigDict, model_validator

from graphs.core.errors import ConfigError
from tools.errors import DependencyError
from tools.governor import CallContext, CallGovernor
from tools.http import classify
from tools.model import sdk_error
from tools.recording import Recorder

__all__ = ["GovernedChatModel", "GovernedRefusal", "GovernedTransport", "calling", "current",
           "governed_tool"]

_current: ContextVar[CallContext | None] = ContextVar("interlock_call_context", default=None)


@contextlib.contextmanager
def calling(ctx: CallContext) -> Iterator[CallContext]:
    """Governed calls made inside take `ctx`'s deadline, and their events go to it."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def current() -> CallContext:
    """The context governed calls are made in (one without a deadline outside `calling`)."""
    return _current.get() or CallContext()


async def _recorded(recorder: Recorder | None, ctx: CallContext, dependency: str, action: str,
                    args: dict[str, Any], run: Callable[[], Awaitable[Any]]) -> Any:
    """`run()` at the recording seam when there is a recorder (a replay serves it instead)."""
    if recorder is None:
        return await run()
    return await recorder.call(ctx, dependency, action, args, run)


class GovernedRefusal(httpx.TransportError):
    """The governor refused the request (breaker open, budget spent, no time left, no slot)."""

    def __init__(self, error: DependencyError, request: httpx.Request) -> None:
        super().__init__(str(error), request=request)
        self.error = error


class GovernedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every request goes through the governor as `dependency`."""

    def __init__(self, dependency: str, governor: CallGovernor,
                 inner: httpx.AsyncBaseTransport | None = None, *,
                 recorder: Recorder | None = None) -> None:
        if inner is None:
            inner = httpx.AsyncHTTPTransport()
        retries = getattr(getattr(inner, "_pool", None), "_retries", 0)
        if retries:
            raise ConfigError(f"the transport of {dependency!r} retries on its own (httpx "
                              f"retries={retries}); give it retries=0: the governor is the one "
                              f"retry layer", variable=f"INTERLOCK_DEP_{dependency.upper()}")
        self.dependency = dependency
        self.governor = governor
        self.inner = inner
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` under the governor's rules."""
        await request.aread()  # a retry sends the same body again
        ctx = current()
        action = f"{request.method} {request.url.path}"
        if self.recorder is None:
            return await self._send(request, ctx, action)

        async def run() -> dict[str, Any]:
            response = await self._send(request, ctx, action)
            return {"status": response.status_code,
                    "headers": [[k, v] for k, v in response.headers.multi_items()
                                if k.lower() not in ("content-encoding", "content-length",
                                                     "transfer-encoding")],
                    "body": base64.b64encode(await response.aread()).decode()}

        args = {"method": request.method, "url": str(request.url),
                "body": hashlib.sha256(request.content).hexdigest()}
        try:
            kept = await self.recorder.call(ctx, self.dependency, action, args, run)
        except DependencyError as exc:
            raise GovernedRefusal(exc, request) from None
        return httpx.Response(int(kept["status"]), headers=kept["headers"],
                              content=base64.b64decode(kept["body"]), request=request)

    async def _send(self, request: httpx.Request, ctx: CallContext, action: str
                    ) -> httpx.Response:
        last: list[httpx.Response] = []

        async def attempt(limit_s: float) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if response.status_code in (408, 429) or response.status_code >= 500:
                await response.aread()
                last[:] = [response]
                raise classify(self.dependency, response)
            return response

        try:
            return await self.governor.call(self.dependency, attempt, ctx, action=action)
        except DependencyError as exc:
            if last and exc.reason not in ("retry_budget_exhausted",):
                return last[0]  # the dependency's own last word
            if self.recorder is not None:
                raise
            raise GovernedRefusal(exc, request) from None

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


def _inner_retries(runnable: Any) -> str | None:
    """Why `runnable` retries on its own, if it does (a `with_retry`, an SDK's max_retries)."""
    seen: set[int] = set()
    while runnable is not None and id(runnable) not in seen:
        seen.add(id(runnable))
        if isinstance(runnable, RunnableRetry):
            return "it is wrapped in with_retry()"
        if isinstance(getattr(runnable, "max_retries", None), int) and runnable.max_retries > 0:
            return f"max_retries={runnable.max_retries}"
        # A model left at max_retries=None gets its SDK client's own default (OpenAI's is 2):
        # what counts is the client that makes the calls.
        for name in ("root_async_client", "root_client", "async_client", "client"):
            sdk = getattr(runnable, name, None)
            retries = getattr(sdk, "max_retries", None)
            if isinstance(retries, int) and not isinstance(retries, bool) and retries > 0:
                return f"its SDK client retries (max_retries={retries}); set max_retries=0"
        runnable = getattr(runnable, "bound", None)
    return None


def governed_tool(tool: BaseTool, dependency: str, governor: CallGovernor, *,
                  recorder: Recorder | None = None) -> BaseTool:
    """A LangChain tool whose every call goes through the governor as `dependency`.

    A failure the tool raises is retried only when it is a `DependencyError` marked
    retryable (or a timeout); anything else fails at once, as the tool would. With a
    `recorder`, results are recorded (and served in a replay): they must be JSON-like.
    """
    if why := _inner_retries(tool):
        raise ConfigError(f"tool {tool.name!r} retries on its own ({why}); the governor is the "
                          f"one retry layer", variable=f"INTERLOCK_DEP_{dependency.upper()}")

    async def call(**kwargs: Any) -> Any:
        async def attempt(limit_s: float) -> Any:
            return await tool.ainvoke(kwargs)

        ctx = current()
        return await _recorded(recorder, ctx, dependency, tool.name, kwargs,
                               lambda: governor.call(dependency, attempt, ctx,
                                                     action=tool.name))

    return StructuredTool.from_function(coroutine=call, name=tool.name,
                                        description=tool.description,
                                        args_schema=tool.args_schema)


class GovernedChatModel(BaseChatModel):
    """A chat model whose every generation goes through the governor (see the module)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    inner: BaseChatModel
    """The model that answers (built with `max_retries=0`)."""
    dependency: str
    """The registered dependency its calls are governed as."""
    governor: Any
    """The governor (a `CallGovernor`)."""
    recorder: Any = None
    """The seam its generations are recorded at and served from in a replay (a `Recorder`)."""

    @model_validator(mode="after")
    def _no_inner_retries(self) -> Self:
        if why := _inner_retries(self.inner):
            raise ConfigError(f"the model of {self.dependency!r} retries on its own ({why}); "
                              f"build it with max_retries=0: the governor is the one retry "
                              f"layer", variable=f"INTERLOCK_DEP_{self.dependency.upper()}")
        return self

    @property
    def _llm_type(self) -> str:
        return f"governed-{self.inner._llm_type}"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        raise NotImplementedError("a governed model is called asynchronously (ainvoke)")

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        async def attempt(limit_s: float) -> ChatResult:
            try:
                result: ChatResult = await self.inner._agenerate(messages, stop=stop,
                                                                 **kwargs)
            except Exception as exc:
                if (error := sdk_error(self.dependency, exc)) is not None:
                    raise error from None
                raise
            return result

        ctx = current()
        if self.recorder is None:
            outcome: ChatResult = await self.governor.call(self.dependency, attempt, ctx,
                                                           action="generate")
            return outcome

        async def run() -> dict[str, Any]:
            result: ChatResult = await self.governor.call(self.dependency, attempt, ctx,
                                                          action="generate")
            return {"generations": [{"message": message_to_dict(g.message),
                                     "info": g.generation_info} for g in result.generations],
                    "llm_output": result.llm_output}

        args = {"messages": [message_to_dict(m) for m in messages], "stop": stop,
                "kwargs": kwargs}
        kept = await self.recorder.call(ctx, self.dependency, "generate", args, run)
        said = messages_from_dict([g["message"] for g in kept["generations"]])
        return ChatResult(generations=[
            ChatGeneration(message=m, generation_info=g["info"])
            for m, g in zip(said, kept["generations"], strict=True)],
            llm_output=kept["llm_output"])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Tools as the inner model binds them, its calls still governed."""
        bound = self.inner.bind_tools(tools, **kwargs)
        return self.bind(**getattr(bound, "kwargs", {}))
