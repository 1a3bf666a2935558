"""The foreign agents' stack, offline: a scripted model, the gateway, and their own servers.

`foreign_stack(...)` starts, for the demo (`interlock demo --foreign`), the chaos scenarios
(`interlock chaos crew-throttled | remote-down`), the benchmarks and the tests:
- `ScriptedModel`: an OpenAI-compatible model that answers each foreign agent by its role
  (the claims team's investigator and reviewer, the crew's writer and editor), as scripted;
- the governed model gateway in front of it (`graphs.gateway`), with a staff key of its own;
- the AutoGen claims team and the CrewAI drafting crew, each in its own environment
  (`make foreign`), served by `foreign/serve.py` with every connection beyond loopback refused
  (`--deny-network`), telemetry off, a private HOME, their model through the gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from graphs.core.actors import STAFF
from graphs.core.errors import ConfigError
from graphs.gateway import Gateway
from graphs.keys import add_key
from graphs.settings import Settings
from tools.simulators.faults import FaultInjector, SimulatorStats
from tools.simulators.serve import asgi_app, serving

__all__ = ["QUIET", "ROOT", "ForeignServer", "ForeignStack", "ScriptedModel", "foreign_stack",
           "missing_environments", "start_server"]

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"claims": (".autogen-venv", "foreign/autogen/claims_graph.py:graph"),
                "drafting": (".crewai-venv", "foreign/crewai/drafting_graph.py:graph")}
"""Each foreign worker: its environment (`make foreign`) and its graph."""
QUIET = {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true",
          "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_TRACKING": "true",
          "AUTOGEN_DISABLE_RUNTIME_TRACING": "true", "ANONYMIZED_TELEMETRY": "false",
          "DO_NOT_TRACK": "1", "LITELLM_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
_FACTS = re.compile(r"checked facts[^\n]*\n((?:- [^\n]*\n?)+)", re.IGNORECASE)
_ORDER = re.compile(r"\border (\d{4,})")
_SERVING = re.compile(r"^serving \S+ on (http://\S+)$", re.MULTILINE)



def missing_environments() -> list[str]:
    """The foreign environments not built yet (`make foreign` builds them)."""
    return [venv for venv, _ in ENVIRONMENTS.values()
            if not (ROOT / venv / ".installed-stamp").exists()]


@dataclass
class ScriptedModel:
    """An OpenAI-compatible model that answers each foreign agent by its role, as scripted.

    The claims team's reviewer gives `verdict`; the crew's writer and editor word the checked
    facts their prompt lists (and, with `promise`, add a promise no fact backs); a role in
    `throttled` is answered 429, `down` 503 (`*`: every role). `calls` counts requests by role.
    """

    verdict: str = "plausible"
    promise: bool = False
    throttled: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    faults: FaultInjector = field(default_factory=lambda: FaultInjector(None))
    """None injected: its failures are by role (`throttled`, `down`)."""
    stats: SimulatorStats = field(default_factory=SimulatorStats)

    @staticmethod
    def role(body: Mapping[str, Any]) -> str:
        """The foreign agent asking: investigator, reviewer, writer, editor (or other)."""
        system = " ".join(str(m.get("content") or "") for m in body.get("messages", [])
                          if m.get("role") == "system").lower()
        for role in ("investigator", "reviewer", "writer", "editor"):
            if f"you are the {role}" in system or f"you are {role}" in system:
                return role
        return "other"

    def answer(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) for one chat-completions request."""
        role = self.role(body)
        self.calls[role] += 1
        if role in self.throttled or "*" in self.throttled:
            return 429, {"error": {"message": "Rate limit reached for requests",
                                   "type": "rate_limit_exceeded"}}, {"Retry-After": "1"}
        if role in self.down or "*" in self.down:
            return 503, {"error": {"message": "The server is overloaded",
                                   "type": "server_error"}}, {}
        said = "\n".join(str(m.get("content") or "") for m in body.get("messages", []))
        order = (_ORDER.findall(said) or ["0"])[0]
        if role == "investigator":
            content = (f"Order {order} was delivered; the customer reports damage on arrival. "
                       f"No photo or carrier note is attached.")
        elif role == "reviewer":
            reasons = {"plausible": ["delivered recently; the damage described fits the items"],
                       "needs_evidence": ["no photo of the damage", "no carrier damage note"],
                       "implausible": ["the items named are not in the order"]}
            content = json.dumps({"verdict": self.verdict,
                                  "reasons": reasons.get(self.verdict, ["approve it"])})
        elif role in ("writer", "editor"):
            facts = _FACTS.search(said)
            lines = [ln[2:].strip() for ln in (facts.group(1) if facts else "").splitlines()
                     if ln.startswith("- ")]
            text = "Thanks for getting in touch! " + " ".join(lines)
            if self.promise:
                text += (f" As an apology we have refunded order {order} in full and added "
                         f"a $20 voucher to your account.")
            content = f"Thought: I now can give a great answer\nFinal Answer: {text}"
        else:
            content = "OK"
        return 200, {"id": f"chatcmpl-{role}", "object": "chat.completion", "created": 0,
                     "model": body.get("model", "scripted"),
                     "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                  "message": {"role": "assistant", "content": content,
                                              "refusal": None}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                               "total_tokens": 2}}, {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """`POST /v1/chat/completions` and `GET /v1/models` (served by `asgi_app`)."""
        self.stats.calls += 1
        status: int
        payload: dict[str, Any]
        headers: dict[str, str]
        if request.url.path.endswith("/models"):
            status, payload, headers = 200, {"object": "list", "data": [
                {"id": "scripted", "object": "model", "created": 0, "owned_by": "interlock"}]}, {}
        elif request.url.path.endswith("/chat/completions") and request.method == "POST":
            try:
                body = json.loads(request.content or b"{}")
            except ValueError:
                body = {}
            status, payload, headers = self.answer(body if isinstance(body, dict) else {})
        else:
            status, payload, headers = 404, {"error": {"message": "not found"}}, {}
        self.stats.statuses[status] += 1
        return httpx.Response(status, json=payload, headers=headers)


@dataclass
class ForeignServer:
    """One foreign worker's server: a process in its own environment."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Kill it (a remote worker that is down)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def denied(self) -> list[str]:
        """Connections beyond loopback it tried (and was refused): telemetry, downloads."""
        return list(httpx.get(f"{self.url}/info", timeout=5).json()["denied_connections"])


@dataclass
class ForeignStack:
    """The scripted model, the gateway in front of it, and the foreign servers."""

    model: ScriptedModel
    model_url: str
    gateway: Gateway
    gateway_url: str
    key: str
    servers: dict[str, ForeignServer]

    def settings(self, base: Settings) -> Settings:
        """Interlock's settings with the claims worker and the drafting crew pointed here."""
        from agents import claims, drafting

        settings = base.with_dependencies(claims.CLAIMS, drafting.DRAFTING)
        for name, server in self.servers.items():
            settings = settings.with_url(name, server.url)
        return replace(settings, drafters=(drafting.DRAFTER,) if "drafting" in self.servers
                       else (), workers=(*base.workers, claims.SPEC)
                       if "claims" in self.servers else base.workers)


def start_server(name: str, home: Path, gateway_url: str, key: str,
                 launched: list[subprocess.Popen[bytes]] | None = None,
                 timeout_s: float = 90.0) -> ForeignServer:
    """Start one foreign worker's server in its own environment; its URL once it answers.

    Its output goes to `<home>/<name>/server.log`. `launched` gets the process as soon as it
    exists, so a caller cancelled while this waits can still stop it.
    """
    venv, target = ENVIRONMENTS[name]
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        raise ConfigError(f"the {name} environment is not built: run `make foreign`",
                          variable="INTERLOCK_EXTENSIONS")
    private = home / name
    private.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(private), "LANG": "C.UTF-8",
           "TMPDIR": str(private), "INTERLOCK_GATEWAY_URL": gateway_url,
           "INTERLOCK_GATEWAY_KEY": key, "NO_PROXY": "127.0.0.1,localhost",
           "PYTHONUNBUFFERED": "1", **QUIET}
    log = private / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(python), str(ROOT / "foreign" / "serve.py"), str(ROOT / target),
             "--graph-id", name, "--port", "0", "--deny-network"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if launched is not None:
        launched.append(process)
    server = ForeignServer(name=name, url="", process=process, log=log)
    began = time.monotonic()
    while time.monotonic() - began < timeout_s and process.poll() is None:
        if not server.url and (said := _SERVING.search(log.read_text(errors="replace"))):
            server.url = said.group(1)
        if server.url:
            try:
                if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    server.stop()
    raise ConfigError(f"the {name} server did not start: {log.read_text()[-2000:]}",
                      variable="INTERLOCK_EXTENSIONS")


@asynccontextmanager
async def foreign_stack(settings: Settings, *, model: ScriptedModel | None = None,
                        workers: tuple[str, ...] = ("claims", "drafting"),
                        home: Path | None = None) -> AsyncIterator[ForeignStack]:
    """Start the scripted model, the gateway and the foreign servers; stop them after.

    The gateway's model is the scripted one, with `settings`' policy for the `model`
    dependency; its key file lives in a home of its own. Whatever was started is stopped,
    whether the block ends, raises or is cancelled.
    """
    model = model or ScriptedModel()
    launched: list[subprocess.Popen[bytes]] = []
    async with AsyncExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="interlock-foreign-"))
        home = home or Path(scratch)
        model_url = (await stack.enter_async_context(serving(asgi_app(model)))).url
        gateway_settings = replace(settings, home=home / "gateway", model="openai:scripted",
                                   openai_base_url=f"{model_url}/v1",
                                   openai_api_key="scripted", api_keys_file=None)
        gateway_settings.home.mkdir(parents=True, exist_ok=True)
        _, key = add_key(gateway_settings.api_keys_path, STAFF, label="foreign agents")
        gateway = Gateway(gateway_settings)
        stack.push_async_callback(gateway.aclose)
        gw_url = (await stack.enter_async_context(serving(gateway))).url
        stack.callback(_stop_all, launched)
        started = await asyncio.gather(*(asyncio.to_thread(
            start_server, name, home, f"{gw_url}/v1", key, launched) for name in workers),
            return_exceptions=True)
        if failed := [s for s in started if isinstance(s, BaseException)]:
            raise failed[0]
        servers = {s.name: s for s in started if isinstance(s, ForeignServer)}
        yield ForeignStack(model=model, model_url=f"{model_url}/v1", gateway=gateway,
                           gateway_url=f"{gw_url}/v1", key=key, servers=servers)


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
