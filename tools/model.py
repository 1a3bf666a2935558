"""The model dependency: a chat model (ChatOpenAI by default) called for structured output.

The client is built with `max_retries=0`: the governor is the only retry layer. The structured
output mode is the first one the server takes (`tools.structured`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr

from graphs.core.clock import Clock
from graphs.core.errors import ConfigError
from tools.config import ToolSettings
from tools.errors import DependencyError
from tools.governor import CallContext, CallGovernor
from tools.http import Handler
from tools.recording import Recorder
from tools.structured import (
    LEARNED,
    Mode,
    StructuredModes,
    error_message,
    json_mode_instruction,
    mode_refused,
)

if TYPE_CHECKING:  # the SDKs load when a model is configured, not with INTERLOCK_MODEL=rules
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

__all__ = ["ModelClient", "build_chat_model", "sdk_error"]

M = TypeVar("M", bound=BaseModel)


def build_chat_model(settings: ToolSettings, *, max_retries: int = 0,
                     handler: Handler | None = None) -> BaseChatModel | None:
    """ChatOpenAI for `INTERLOCK_MODEL=openai:<model>`, None for `rules`.

    `max_retries` stays 0 (the governor retries); the chaos harness's naive baseline passes the
    SDK's default. `handler` serves the model in-process (the model simulator).
    """
    if settings.model == "rules":
        return None
    from langchain_openai import ChatOpenAI

    provider, _, name = settings.model.partition(":")
    if provider != "openai" or not name:
        raise ConfigError("expected `rules` or `openai:<model>`", variable="INTERLOCK_MODEL")
    extra: dict[str, Any] = {}
    base_url = settings.openai_base_url
    if handler is not None:
        extra["http_async_client"] = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        base_url = "http://model.sim/v1"
    return ChatOpenAI(
        model=name,
        max_retries=max_retries,
        timeout=settings.policy("model").timeout,
        base_url=base_url,
        api_key=SecretStr(settings.openai_api_key or "not-set"),
        temperature=0,
        **extra,
    )


class ModelClient:
    """Structured-output calls to a chat model, through the governor."""

    dependency = "model"

    def __init__(self, model: BaseChatModel, governor: CallGovernor,
                 recorder: Recorder | None = None, clock: Clock | None = None,
                 modes: StructuredModes | None = None) -> None:
        self.model = model
        self._modes = modes or LEARNED
        self._runnables: dict[tuple[type[BaseModel], Mode], Any] = {}
        self._governor = governor
        self._clock = clock or Clock()
        self._recorder = recorder or Recorder(self._clock)

    @property
    def name(self) -> str:
        """The model's name, for provenance."""
        return str(getattr(self.model, "model_name", None) or type(self.model).__name__)

    @property
    def server(self) -> str:
        """Where the model is served, and which model: what structured-output modes are per."""
        base = getattr(self.model, "openai_api_base", None) or "https://api.openai.com/v1"
        return f"{base}#{self.name}"

    def _runnable(self, schema: type[M], mode: Mode) -> Any:
        key = (schema, mode)
        if (found := self._runnables.get(key)) is None:
            found = self._runnables[key] = self.model.with_structured_output(
                schema, method=mode, include_raw=True)
        return found

    async def structured(self, schema: type[M], messages: list[BaseMessage],
                         ctx: CallContext) -> M:
        """Ask the model for an instance of `schema`; malformed output is a non-retryable error.

        Asked in the first structured-output mode the server has not refused (`tools.structured`):
        a refusal of a mode moves on to the next one within the same attempt.
        """
        import openai
        from langchain_core.messages import SystemMessage

        async def ask(mode: Mode) -> Any:
            said = messages
            if mode == "json_mode":
                said = [SystemMessage(json_mode_instruction(schema.model_json_schema())),
                        *messages]
            return await self._runnable(schema, mode).ainvoke(said)

        async def attempt(limit_s: float) -> M:
            try:
                for mode in self._modes.order(self.server):
                    try:
                        out: Any = await ask(mode)
                        break
                    except openai.APIStatusError as exc:
                        if not mode_refused(exc.status_code,
                                            error_message(exc.body, str(exc.message))):
                            raise
                        self._modes.refuse(self.server, mode)
                else:
                    raise DependencyError(
                        "the model's server takes none of json_schema, tool calls or JSON mode",
                        dependency="model", retryable=False, reason="unsupported")
            except (openai.APIStatusError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                error = sdk_error("model", exc)
                assert error is not None
                raise error from None
            except (ValueError, openai.OpenAIError) as exc:
                # The SDK's own parsing (json_schema) raises before include_raw can catch it;
                # a refusal or a truncated answer is as unusable as malformed JSON.
                raise DependencyError(f"unusable output: {type(exc).__name__}",
                                      dependency="model", retryable=False,
                                      reason="malformed_output") from None
            parsed = out.get("parsed") if isinstance(out, dict) else out
            if out.get("parsing_error") is not None or not isinstance(parsed, schema):
                raise DependencyError(f"output does not match {schema.__name__}",
                                      dependency="model", retryable=False,
                                      reason="malformed_output")
            return parsed

        text = str(messages[-1].content) if messages else ""
        self._recorder.learn((schema,))
        return await self._recorder.call(
            ctx, self.dependency, "plan", {"request": text},
            lambda: self._governor.call(self.dependency, attempt, ctx, action="plan"))


def sdk_error(dependency: str, exc: BaseException) -> DependencyError | None:
    """The governor's view of an OpenAI SDK error (None: not a dependency failure)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        raw = exc.response.headers.get("retry-after") if exc.response is not None else None
        try:
            retry_after = float(raw) if raw else None
        except ValueError:
            retry_after = None
        retryable = status in (408, 429) or status >= 500
        reason = "throttled" if status == 429 else ("unavailable" if retryable else "rejected")
        return DependencyError(f"HTTP {status}", dependency=dependency, retryable=retryable,
                               status=status, retry_after_s=retry_after, reason=reason)
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return DependencyError(type(exc).__name__, dependency=dependency, retryable=True,
                               reason="timeout" if isinstance(exc, openai.APITimeoutError)
                               else "transport")
    return None