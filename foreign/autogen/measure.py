"""Requests and seconds per model call of an AutoGen team member: native vs Interlock-governed.

    measure.py --model-url 429=URL --model-url 503=URL
               --gateway-url 429=URL --gateway-url 503=URL --key KEY [--calls N]

Each URL is an OpenAI-compatible `/v1` base: `--model-url` a model itself (AutoGen's defaults:
`OpenAIChatCompletionClient` with the SDK's own retries), `--gateway-url` Interlock's gateway in
front of such a model (`max_retries=0`, as the served claims graph). `LABEL=` names the model's
behaviour in the output; a bare URL is labelled `model`. A logical call is one team member's
`create()`; the requests counted are those this process sends (an httpx event hook), not what
the gateway's governor sends upstream. Prints one JSON object:
`{"calls": N, "native": {LABEL: {"requests_per_call", "seconds", "outcomes"}}, "governed": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import openai
from autogen_core.models import ChatCompletionClient, LLMMessage, SystemMessage, UserMessage
from autogen_ext.models.openai import OpenAIChatCompletionClient
from claims_graph import MODEL_INFO, RequestHook, gateway_client

__all__ = ["main", "measure"]

_MESSAGES: list[LLMMessage] = [SystemMessage(content="You are the reviewer of a claims team."),
             UserMessage(content="Is a cracked mug in a delivered order plausible?",
                         source="investigator")]


def _labelled(values: list[str]) -> dict[str, str]:
    """`LABEL=URL` or a bare `URL` (labelled `model`), by label."""
    out: dict[str, str] = {}
    for value in values:
        label, sep, url = value.partition("=")
        if not sep or "/" in label:
            label, url = "model", value
        out[label] = url
    return out


async def measure(build: Callable[[RequestHook], ChatCompletionClient],
                  calls: int) -> dict[str, Any]:
    """Requests sent and seconds taken per logical call, a new client for each (as per run)."""
    sent, outcomes = 0, Counter[str]()

    async def count(request: httpx.Request) -> None:
        nonlocal sent
        sent += 1

    started = time.monotonic()
    for _ in range(calls):
        client = build(count)
        try:
            await client.create(_MESSAGES)
            outcomes["ok"] += 1
        except openai.APIStatusError as exc:
            outcomes[str(exc.status_code)] += 1
        except Exception as exc:  # a timeout, a refused connection: what the caller would see
            outcomes[type(exc).__name__] += 1
        finally:
            await client.close()
    return {"requests_per_call": sent / calls,
            "seconds": round((time.monotonic() - started) / calls, 3),
            "outcomes": dict(outcomes)}


def main(argv: list[str] | None = None) -> None:
    """Measure every model and gateway given; print the figures as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-url", action="append", default=[], metavar="[LABEL=]URL")
    parser.add_argument("--gateway-url", action="append", default=[], metavar="[LABEL=]URL")
    parser.add_argument("--key", required=True, help="a staff key of the gateway")
    parser.add_argument("--model-key", default="sk-measure", help="the model's own key")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--deadline-ms", type=int, default=10_000,
                        help="x-interlock-deadline-ms of each governed call")
    args = parser.parse_args(argv)

    def native(url: str) -> Callable[[RequestHook], ChatCompletionClient]:
        return lambda hook: OpenAIChatCompletionClient(  # type: ignore[call-arg]
            model="stub-model", base_url=url, api_key=args.model_key, model_info=MODEL_INFO,
            http_client=httpx.AsyncClient(event_hooks={"request": [hook]}))

    def governed(url: str) -> Callable[[RequestHook], ChatCompletionClient]:
        headers = {"x-interlock-deadline-ms": str(args.deadline_ms),
                   "x-interlock-thread": "measure", "x-interlock-step": "measure"}
        return lambda hook: gateway_client(headers, base_url=url, api_key=args.key,
                                           on_request=[hook])

    async def run() -> dict[str, Any]:
        return {"calls": args.calls,
                "native": {label: await measure(native(url), args.calls)
                           for label, url in _labelled(args.model_url).items()},
                "governed": {label: await measure(governed(url), args.calls)
                             for label, url in _labelled(args.gateway_url).items()}}

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
