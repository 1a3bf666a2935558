"""Tests of the CrewAI drafting graph, run in .crewai-venv (`pytest -q foreign/crewai`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

# drafting_graph sets CrewAI's environment before crewai loads: import crewai through it.
from drafting_graph import BaseLLM, GovernedLLM, make_graph  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SERVE = Path(__file__).resolve().parents[1] / "serve.py"
GRAPH = Path(__file__).resolve().parent / "drafting_graph.py"
STATEMENTS = ["Order 1042 is shipped.", "It is due on 2025-03-06."]
NOTICES = ["Refunds for order 1042 could not be checked."]
WORDS = "Where is my order 1042? {also} tell me I get a refund!"

Answer = tuple[int, dict[str, Any], dict[str, str]]


def payload(statements: list[str] | None = None) -> dict[str, Any]:
    """A drafting step's input for a question about order 1042."""
    return {"step": {"id": "t1.draft", "worker": "drafting"},
            "request": {"text": WORDS, "turn": 1},
            "known": {"order:1042": {"kind": "order", "subject": "1042",
                                     "value": {"status": "shipped"}}},
            "template": {"statements": STATEMENTS if statements is None else statements,
                         "notices": NOTICES},
            "idempotency_key": "il-test"}


class ScriptedLLM(BaseLLM):
    """A CrewAI model answering scripted texts (or raising scripted errors), recording prompts."""

    script: list[Any] = []
    prompts: list[list[dict[str, Any]]] = []

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
             available_functions: Any = None, from_task: Any = None, from_agent: Any = None,
             response_model: Any = None) -> str:
        """The next scripted answer."""
        self.prompts.append(list(messages))
        if not self.script:
            raise AssertionError("the crew called the model more often than scripted")
        nxt = self.script.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return str(nxt)


def scripted(*answers: Any) -> ScriptedLLM:
    """A fresh scripted model."""
    return ScriptedLLM(model="scripted", script=list(answers), prompts=[])


def run(llm: BaseLLM, statements: list[str] | None = None) -> dict[str, Any]:
    """The graph's final values with `llm` as the crew's model."""
    seen: list[dict[str, Any]] = []

    def factory(configurable: Any) -> BaseLLM:
        seen.append(dict(configurable))
        return llm

    values = asyncio.run(make_graph(factory).ainvoke(
        payload(statements), {"configurable": {"x-interlock-step": "t1.draft"}}))
    assert all(c.get("x-interlock-step") == "t1.draft" for c in seen)
    return dict(values)


def text_of(prompt: list[dict[str, Any]]) -> str:
    """All of one model call's message contents."""
    return "\n".join(str(message.get("content", "")) for message in prompt)


def test_reply_is_the_editors_text() -> None:
    """The writer drafts, the editor's (unfenced) text is the reply; two model calls."""
    llm = scripted("Hi! Order 1042 is shipped, due 2025-03-06, and your refund is on its way.",
                   "```text\nHi! Order 1042 is shipped and due on 2025-03-06.\n```")
    values = run(llm)
    assert values == {"status": "done", "text": "Hi! Order 1042 is shipped and due on 2025-03-06.",
                      "note": "worded by the writer, edited by the editor (2 statements)"}
    assert len(llm.prompts) == 2


def test_writer_and_editor_get_the_statements() -> None:
    """Both get every statement; the writer the customer's words, the editor the draft."""
    draft = "Hi! Order 1042 is shipped, due 2025-03-06. Refund approved!"
    llm = scripted(draft, "Order 1042 is shipped and due on 2025-03-06.")
    run(llm)
    writer, editor = (text_of(prompt) for prompt in llm.prompts)
    assert "You are writer" in writer and "You are editor" in editor
    for statement in STATEMENTS:
        assert statement in writer and statement in editor
    assert WORDS in writer  # braces and all: no placeholder interpolation
    assert NOTICES[0] in writer and "do not repeat" in writer
    assert draft in editor and WORDS not in editor


def test_no_statements_is_degraded_without_a_model_call() -> None:
    """Nothing checked to word: degraded, and the model is never called."""
    llm = scripted()
    assert run(llm, statements=[" ", 7]) == {  # type: ignore[list-item]
        "status": "degraded", "text": "", "note": "no statements to word"}
    assert llm.prompts == []


def test_empty_editor_answer_is_degraded() -> None:
    """An editor answering only whitespace or an empty fence leaves no usable text."""
    assert run(scripted("Order 1042 is shipped.", "```\n\n```"))["status"] == "degraded"


def test_a_failed_model_call_raises_once() -> None:
    """A model failure ends the run on the first call: the agents do not retry."""
    llm = scripted(ConnectionError("the model is down"))
    with pytest.raises(ConnectionError, match="the model is down"):
        run(llm)
    assert len(llm.prompts) == 1  # CrewAI's default max_retry_limit=2 would make it 3


def test_governed_llm_is_not_wrapped_in_crewais_retry() -> None:
    """CrewAI wraps every BaseLLM subclass's call in its retry; not the governed one's."""
    assert getattr(ScriptedLLM.call, "_crewai_rate_limit_wrapped", False)  # still CrewAI's way
    for name in ("call", "acall"):
        method = getattr(GovernedLLM, name)
        assert not getattr(method, "_crewai_rate_limit_wrapped", False)
        assert not hasattr(method, "__wrapped__")


# --- the served graph, over HTTP, against a local OpenAI-compatible stub ---------------------


def completion(content: str) -> Answer:
    """A 200 chat completion whose message is `content`."""
    return (200, {"id": "chatcmpl-stub", "object": "chat.completion", "created": 1764000000,
                  "model": "stub", "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant",
                                                            "content": content}}],
                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}, {})


@dataclass
class Stub:
    """Scripted chat-completion answers, and every request it was sent."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def script(self, *answers: Answer) -> None:
        """Forget earlier requests and answer these next."""
        self.answers[:] = answers
        self.requests.clear()


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    """A local OpenAI-compatible server answering its script (500 when it runs out)."""
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.requests.append({"path": self.path, "body": body,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}})
            status, answer, headers = state.answers.pop(0) if state.answers else (
                500, {"error": {"message": "no answer scripted", "type": "stub"}}, {})
            data = json.dumps(answer).encode()
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served process's (operator's) home directory."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def served(stub: Stub, home: Path) -> Iterator[str]:
    """The drafting graph served by serve.py with --deny-network, its model the stub."""
    # Without what importing drafting_graph here set: the served module must set it itself.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CREWAI_", "OTEL_", "XDG_"))}
    env.update(INTERLOCK_GATEWAY_URL=stub.url, INTERLOCK_GATEWAY_KEY="il-key",
               HOME=str(home))
    proc = subprocess.Popen([sys.executable, str(SERVE), f"{GRAPH}:graph", "--graph-id",
                             "drafting", "--port", "0", "--deny-network"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving drafting on "), line
        url = line.split(" on ", 1)[1].strip()
        for _ in range(200):
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_run(url: str, deadline_ms: int = 30000) -> tuple[dict[str, Any], float]:
    """One stateless run of the served graph, as Interlock's remote worker makes it."""
    started = time.monotonic()
    answer = httpx.post(f"{url}/runs/wait", json={"assistant_id": "drafting",
                                                  "input": payload()},
                        headers={"Idempotency-Key": "il-test", "x-interlock-thread": "th-1",
                                 "x-interlock-step": "t1.draft",
                                 "x-interlock-deadline-ms": str(deadline_ms)}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json(), time.monotonic() - started


def test_served_draft_sends_one_request_per_agent_with_the_callers_headers(
        served: str, stub: Stub) -> None:
    """Over HTTP: the editor's text comes back; each model request carries the run's headers."""
    stub.script(completion("Hi! Order 1042 is shipped, due 2025-03-06."),
                completion("Order 1042 is shipped and due on 2025-03-06."))
    values, _ = post_run(served, deadline_ms=20000)
    assert values["status"] == "done"
    assert values["text"] == "Order 1042 is shipped and due on 2025-03-06."
    assert len(stub.requests) == 2
    for request in stub.requests:
        headers, body = request["headers"], request["body"]
        assert request["path"] == "/v1/chat/completions"
        assert headers["authorization"] == "Bearer il-key"
        assert headers["x-interlock-thread"] == "th-1"
        assert headers["x-interlock-step"] == "t1.draft"
        assert 0 < int(headers["x-interlock-deadline-ms"]) <= 20000
        assert body["model"] == "gateway" and body["stream"] is False
        assert all(set(m) <= {"role", "content"} for m in body["messages"])
        assert "tools" not in body
    assert STATEMENTS[0] in text_of(stub.requests[0]["body"]["messages"])


@pytest.mark.parametrize("answer", [
    (429, {"error": {"message": "Rate limit reached. Too many requests.", "type": "requests",
                     "code": "rate_limit_exceeded"}}, {"retry-after": "0"}),
    (503, {"error": {"message": "overloaded", "type": "server_error"}}, {}),
    (424, {"error": {"message": "the model's circuit breaker is open",
                     "type": "dependency_refused"}}, {"x-should-retry": "false"}),
], ids=["429", "503", "424"])
def test_a_refused_model_call_is_one_request_and_an_error(
        served: str, stub: Stub, answer: Answer) -> None:
    """A throttled, failing or refusing model: exactly one request, and the run's __error__."""
    stub.script(answer, *[completion("should never be asked for")] * 30)
    values, seconds = post_run(served)
    assert values.get("__error__", {}).get("error") == "GatewayError", values
    assert f"HTTP {answer[0]}" in values["__error__"]["message"]
    assert len(stub.requests) == 1  # SDK, BaseLLM wrapper and agent retries would make 27
    assert seconds < 5  # no backoff slept


def test_governed_calls_skip_crewais_rate_limit_retry(
        stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an error CrewAI reads as a rate limit is one request: its retry wrapper is gone."""

    def throttled(answer: httpx.Response) -> str:
        raise RuntimeError("Rate limit reached: too many requests")  # what CrewAI retries

    monkeypatch.setattr(GovernedLLM, "_reply", staticmethod(throttled))
    llm = GovernedLLM(model="gateway", base_url=stub.url, api_key="il-key")
    for call in (lambda: llm.call("hello"), lambda: asyncio.run(llm.acall("hello"))):
        stub.script(completion("unused"), completion("unused"), completion("unused"))
        with pytest.raises(RuntimeError, match="Rate limit"):
            call()
        assert len(stub.requests) == 1  # CrewAI's wrapper would send 3


def test_no_connection_beyond_loopback(served: str, stub: Stub, home: Path) -> None:
    """After runs, --deny-network refused nothing (no telemetry); CrewAI left HOME alone."""
    stub.script(completion("Order 1042 is shipped."), completion("Order 1042 is shipped."))
    assert post_run(served)[0]["status"] == "done"
    info = httpx.get(f"{served}/info", timeout=5).json()
    assert info["denied_connections"] == []
    assert list(home.iterdir()) == []  # its files went to a private temporary directory
