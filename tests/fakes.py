"""Test doubles: a scripted fake chat model and a local OpenAI-compatible HTTP stub."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable


class ScriptedChatModel(BaseChatModel):
    """Replays scripted answers in order: an AIMessage, a dict of tool-call args, or an error."""

    script: list[Any] = field(default_factory=list)  # type: ignore[assignment]
    calls: list[list[BaseMessage]] = []

    def __init__(self, script: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = list(script)
        self.calls = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        return self

    def _next(self, messages: list[BaseMessage]) -> ChatResult:
        self.calls.append(messages)
        if not self.script:
            raise AssertionError("the scripted model was called more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, dict):
            item = AIMessage(content="", tool_calls=[
                {"name": "PlanDraft", "args": item, "id": f"call_{len(self.calls)}"}])
        return ChatResult(generations=[ChatGeneration(message=item)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        return self._next(messages)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        return self._next(messages)


@dataclass
class OpenAIStub:
    """A local OpenAI-compatible chat-completions server that replays scripted answers."""

    answers: list[tuple[int, dict[str, Any], dict[str, str]]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    respond: Callable[[dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]] | None = None
    """Answers every request from its body when set (a server's behaviour, not a script)."""

    @staticmethod
    def completion(content: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """A 200 answer whose message content is `content`."""
        return (200, {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 1764000000,
            "model": "stub-model",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content,
                                     "refusal": None}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }, {})


@contextmanager
def openai_stub(answers: list[tuple[int, dict[str, Any], dict[str, str]]],
                respond: Callable[[dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]
                | None = None) -> Iterator[OpenAIStub]:
    """Serve `answers` (status, body, headers) on 127.0.0.1; yields the stub with its URL.

    `respond(body)`, if given, answers every request instead.
    """
    stub = OpenAIStub(answers=list(answers), respond=respond)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.requests.append({"path": self.path, "body": body,
                                  "headers": dict(self.headers.items())})
            status, payload, headers = (
                stub.respond(body) if stub.respond is not None else stub.answers.pop(0)
                if stub.answers else (500, {"error": {"message": "no answer scripted"}}, {}))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
