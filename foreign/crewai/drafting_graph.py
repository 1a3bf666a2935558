"""The drafting worker: a CrewAI writer and editor word the reply, served as a LangGraph graph."""

from __future__ import annotations

import os
import tempfile


def _private_environment() -> None:
    """No telemetry, no tracing, and CrewAI's files in a private directory: before crewai loads."""
    for flag in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING", "OTEL_SDK_DISABLED"):
        os.environ[flag] = "true"
    os.environ["CREWAI_TRACING_ENABLED"] = "false"
    if not os.environ.get("CREWAI_STORAGE_DIR"):
        home = tempfile.mkdtemp(prefix="interlock-crewai-")
        # CrewAI writes ~/.config/crewai, ~/.local/share/crewai/credentials and its task
        # outputs database; none of it belongs in the operator's home.
        os.environ["HOME"] = home
        for name, under in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                            ("XDG_CACHE_HOME", ".cache")):
            os.environ[name] = os.path.join(home, under)
        os.environ["CREWAI_STORAGE_DIR"] = os.path.join(home, "storage")


_private_environment()

import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from typing import Any, TypedDict, TypeVar  # noqa: E402

import httpx  # noqa: E402
from crewai import Agent, Crew, Process, Task  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from pydantic import Field  # noqa: E402

__all__ = ["DraftInput", "DraftOutput", "DraftState", "GatewayError", "GovernedLLM",
           "LLMFactory", "build_crew", "governed_llm", "graph", "make_graph"]

LLMFactory = Callable[[Mapping[str, Any]], BaseLLM]
"""Builds the crew's model for one run from the run's `configurable` (the caller's headers)."""

_DEFAULT_TIMEOUT_S = 60.0
_MAX_ANSWER_BYTES = 1024 * 1024
_MAX_STATEMENTS = 40
_MAX_CHARS = 4000
_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)
_C = TypeVar("_C", bound=type)
_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})


class GatewayError(RuntimeError):
    """The gateway refused or failed one model call (never retried here).

    `status` is the HTTP status (0: no answer); `kind` and `reason` the error's `type` and
    `code` as the gateway named them (`dependency_refused`, `breaker_open`). Deliberately no
    `status_code`, `response` or `code` attribute: CrewAI's rate-limit classifier reads those,
    and nothing here is CrewAI's to retry.
    """

    def __init__(self, status: int, kind: str, reason: str = "") -> None:
        self.status = status
        self.kind = kind
        self.reason = reason
        super().__init__(f"the model gateway answered HTTP {status} ({kind}"
                         f"{': ' + reason if reason else ''})")


def _own_call_methods(cls: _C) -> _C:
    """Undo the retry wrapper `BaseLLM.__init_subclass__` put around `call` and `acall`.

    The wrapper is installed when the class is created (with `functools.wraps`, so the
    original is its `__wrapped__`); setting the originals back afterwards is not wrapped again.
    """
    for name in ("call", "acall"):
        method = cls.__dict__[name]
        setattr(cls, name, getattr(method, "__wrapped__", method))
    return cls


@_own_call_methods
class GovernedLLM(BaseLLM):
    """A CrewAI model whose every call is one request to Interlock's gateway, never retried.

    No OpenAI SDK (and so none of its retries) is involved, and `call`/`acall` are not wrapped
    in CrewAI's rate-limit retry; with the agents' `max_retry_limit=0` a failed call raises
    out of the crew, and the governor behind the gateway is the only retry layer.
    """

    llm_type: str = "interlock-gateway"
    headers: dict[str, str] = Field(default_factory=dict)
    deadline: float | None = None
    """`time.monotonic()` by which the run must be done (from `x-interlock-deadline-ms`)."""

    def supports_stop_words(self) -> bool:
        """The drafting agents have no tools, so no ReAct stop words are sent."""
        return False

    def supports_function_calling(self) -> bool:
        """No tools: CrewAI never asks the model to call functions."""
        return False

    def get_input_tokens_count(self, messages: Any, tools: Any = None,
                               response_model: Any = None) -> int:
        """The base class's four-characters-a-token estimate, without its warning per call."""
        text = messages if isinstance(messages, str) else " ".join(
            str(m.get("content", "")) for m in messages)
        return (len(text) + 3) // 4

    def _request(self, messages: str | Sequence[Any]) -> tuple[dict[str, Any],
                                                                dict[str, str], float]:
        """The body, headers and timeout of one call, or `GatewayError` with no time left."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        timeout = _DEFAULT_TIMEOUT_S
        headers = {"authorization": f"Bearer {self.api_key or ''}", **self.headers}
        if self.deadline is not None:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise GatewayError(0, "no_time_left", "deadline")
            headers["x-interlock-deadline-ms"] = str(max(1, int(timeout * 1000)))
        # CrewAI marks its messages (`cache_breakpoint`); an OpenAI server takes only its own keys.
        body: dict[str, Any] = {"model": self.model, "stream": False, "messages": [
            {key: value for key, value in message.items() if key in _MESSAGE_KEYS}
            for message in messages]}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body, headers, timeout

    @staticmethod
    def _reply(answer: httpx.Response) -> str:
        """The completion's text, or `GatewayError`."""
        if len(answer.content) > _MAX_ANSWER_BYTES:
            raise GatewayError(answer.status_code, "too_large")
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        if answer.status_code >= 400 or not isinstance(parsed, dict):
            error = parsed.get("error") if isinstance(parsed, dict) else None
            error = error if isinstance(error, dict) else {}
            raise GatewayError(answer.status_code, str(error.get("type") or "not_json")[:60],
                               str(error.get("code") or "")[:60])
        try:
            content = parsed["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise GatewayError(answer.status_code, "no_choice") from None
        return content if isinstance(content, str) else ""

    def _url(self) -> str:
        return f"{(self.base_url or '').rstrip('/')}/chat/completions"

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
             available_functions: Any = None, from_task: Any = None, from_agent: Any = None,
             response_model: Any = None) -> str:
        """One chat completion through the gateway (CrewAI calls this from a worker thread)."""
        body, headers, timeout = self._request(messages)
        with httpx.Client(timeout=timeout) as client:
            answer = client.post(self._url(), json=body, headers=headers)
        return self._reply(answer)

    async def acall(self, messages: Any, tools: Any = None, callbacks: Any = None,
                    available_functions: Any = None, from_task: Any = None,
                    from_agent: Any = None, response_model: Any = None) -> str:
        """`call`, asynchronously."""
        body, headers, timeout = self._request(messages)
        async with httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.post(self._url(), json=body, headers=headers)
        return self._reply(answer)


def governed_llm(configurable: Mapping[str, Any]) -> GovernedLLM:
    """The served graph's model for one run: the gateway, with the caller's headers."""
    headers = {name: str(configurable[name]) for name in ("x-interlock-thread",
                                                          "x-interlock-step")
               if configurable.get(name)}
    deadline = None
    try:
        deadline = time.monotonic() + float(configurable["x-interlock-deadline-ms"]) / 1000
    except (KeyError, TypeError, ValueError):
        pass
    return GovernedLLM(model=os.environ.get("DRAFTING_MODEL", "gateway"),
                       base_url=os.environ["INTERLOCK_GATEWAY_URL"],
                       api_key=os.environ["INTERLOCK_GATEWAY_KEY"],
                       headers=headers, deadline=deadline)


class DraftInput(TypedDict, total=False):
    """The remote-worker input and the template to word."""

    step: dict[str, Any]
    request: dict[str, Any]
    known: dict[str, Any]
    template: dict[str, Any]
    idempotency_key: str


class DraftOutput(TypedDict, total=False):
    """The answer: `status` (`done` or `degraded`), the reply's `text`, and a `note`."""

    status: str
    text: str
    note: str


class DraftState(DraftInput, DraftOutput, total=False):
    """The input and the answer."""


def _lines(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def build_crew(llm: BaseLLM, words: str, statements: Sequence[str],
               notices: Sequence[str]) -> Crew:
    """The writer and the editor, one task each, in sequence; no tools, memory or planning."""
    facts = _lines(statements)

    def agent(role: str, goal: str, backstory: str) -> Agent:
        return Agent(role=role, goal=goal, backstory=backstory, llm=llm, tools=[],
                     allow_delegation=False, max_retry_limit=0,
                     respect_context_window=False, verbose=False)

    writer = agent("writer", "Word friendly, accurate replies to customers.",
                   "You write customer support replies. You state only facts you were given.")
    editor = agent("editor", "Make replies short and strictly factual.",
                   "You edit customer support replies. You remove every claim that is not "
                   "one of the checked facts.")
    context = f"\n\nNotices the reply will carry (context only, do not repeat them):\n" \
              f"{_lines(notices)}" if notices else ""
    write = Task(
        description=("Word a short, friendly reply to this customer message:\n<<<\n"
                     f"{words}\n>>>\n\nThe checked facts (state these, and nothing else; "
                     f"promise nothing, guess nothing):\n{facts}{context}"),
        expected_output="The reply to the customer, as plain text.", agent=writer)
    edit = Task(
        description=("Edit the draft reply in your context: keep it friendly, make it "
                     "tighter, and remove anything that is not one of these checked facts:\n"
                     f"{facts}\n\nAnswer with the reply text only: no preamble, no markdown."),
        expected_output="The edited reply, as plain text.", agent=editor, context=[write])
    return Crew(agents=[writer, editor], tasks=[write, edit], process=Process.sequential,
                memory=False, planning=False, verbose=False)


def _plain(text: str) -> str:
    """The reply without surrounding whitespace, a code fence or a `Final Answer:` label."""
    text = text.strip()
    if fenced := _FENCE.match(text):
        text = fenced.group(1).strip()
    if text.lower().startswith("final answer:"):
        text = text[len("final answer:"):].strip()
    return text[:_MAX_CHARS]


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def make_graph(llm_factory: LLMFactory) -> Any:
    """The drafting graph, its crew's model built per run by `llm_factory(configurable)`.

    Input: the remote-worker payload plus `template: {statements, notices}`; the answer is
    `{"status": "done", "text": <the editor's reply>, "note"}`, or `"degraded"` with no text.
    Notices are context only (Interlock appends them itself). A failed model call raises.
    """

    async def draft(state: DraftState, config: RunnableConfig) -> dict[str, Any]:
        template = state.get("template") or {}
        statements = _strings(template.get("statements"))[:_MAX_STATEMENTS]
        if not statements:
            return {"status": "degraded", "text": "", "note": "no statements to word"}
        notices = _strings(template.get("notices"))[:_MAX_STATEMENTS]
        words = str((state.get("request") or {}).get("text") or "")[:_MAX_CHARS]
        llm = llm_factory(config.get("configurable") or {})
        crew = build_crew(llm, words, statements, notices)
        # No `inputs`: CrewAI would read `{...}` in the customer's words as placeholders.
        result = await crew.akickoff()
        text = _plain(str(getattr(result, "raw", "") or ""))
        if not text:
            return {"status": "degraded", "text": "", "note": "the editor answered no text"}
        return {"status": "done", "text": text,
                "note": f"worded by the writer, edited by the editor "
                        f"({len(statements)} statements)"}

    builder = StateGraph(DraftState, input_schema=DraftInput, output_schema=DraftOutput)
    builder.add_node("draft", draft)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", END)
    return builder.compile()


graph = make_graph(governed_llm)
