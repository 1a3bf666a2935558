"""Serves one LangGraph graph over the Agent Protocol's stateless runs, in a foreign environment.

The LangGraph server (langgraph-api) and Aegra cannot share an environment with every agent
framework: autogen-core 0.7.5 pins `protobuf~=5.29`, langgraph-api needs protobuf 6 and Aegra
protobuf 7. Interlock's remote workers use only the stateless part of the protocol, so an
environment that has `langgraph`, `starlette` and `uvicorn` serves its graph with this file:

    python foreign/serve.py foreign/autogen/claims_graph.py:graph --graph-id claims --port 8410

- `GET /ok`, `GET /info`: liveness, as the LangGraph server answers them.
- `POST /assistants/search`: the one graph, as an assistant named `--graph-id`.
- `POST /runs/wait` with `{"assistant_id", "input", "config"?}`: runs the graph once and
  answers its final values; a run that raises answers 200 with `{"__error__": {"error",
  "message"}}` (as the LangGraph server does), so no client retries a graph's own failure.
  The caller's `x-interlock-*` and `Idempotency-Key` headers reach the graph in
  `config["configurable"]` (as the server's `configurable_headers` would put them), and
  `x-interlock-deadline-ms` bounds the run (504 past it).
- `--deny-network`: connections, datagrams and name lookups beyond loopback made through
  Python's socket module (asyncio's loop included) are refused and counted (`GET /info`
  reports `denied_connections`): telemetry and downloads, proven off. It is a guard in the
  process, not a sandbox: native code that opens sockets itself is not seen.
- It binds to loopback by default and has no authentication: an internal service, as a remote
  worker's server is; put it behind your own gateway to serve it further.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import importlib.util
import ipaddress
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["build_app", "load_graph", "main"]

_FORWARDED = ("x-interlock-deadline-ms", "x-interlock-thread", "x-interlock-step",
              "idempotency-key")
_MAX_BODY = 4 * 1024 * 1024
_denied: list[str] = []
_log = logging.getLogger("foreign.serve")


def load_graph(target: str) -> Any:
    """The object `path/to/file.py:attr` or `package.module:attr` names."""
    where, _, attr = target.partition(":")
    if not attr:
        raise SystemExit(f"expected FILE.py:ATTR or MODULE:ATTR, got {target!r}")
    if where.endswith(".py"):
        path = Path(where).resolve()
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, attr)


def _loopback(address: Any) -> bool:
    """Whether an address (a host, or a `(host, port, ...)` tuple) is this machine."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode(errors="replace")
    if not isinstance(host, str):
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def deny_network() -> None:
    """Refuse (and count) connections, datagrams and name lookups beyond loopback.

    Patches Python's socket module (connect, connect_ex, sendto, sendmsg, getaddrinfo,
    gethostbyname(_ex), gethostbyaddr); the server then runs on asyncio's own event loop (not
    uvloop, whose C code would go round the patches), so what Python code opens passes here.
    It is a guard, not a sandbox: native code, or `_socket` used directly, is not seen.
    """
    inet = (socket.AF_INET, socket.AF_INET6)
    real = {name: getattr(socket.socket, name)
            for name in ("connect", "connect_ex", "sendto", "sendmsg")}
    lookups = {name: getattr(socket, name) for name in (
        "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")}

    def refuse(what: str, address: Any) -> ConnectionRefusedError:
        host = address[0] if isinstance(address, tuple) else address
        _denied.append(f"{what} {host!s}:{address[1] if isinstance(address, tuple) else ''}")
        return ConnectionRefusedError(f"network denied: {host!s}")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in inet and not _loopback(address):
            raise refuse("connect", address)
        return real["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in inet and not _loopback(address):
            refuse("connect", address)
            return errno.ECONNREFUSED
        return real["connect_ex"](self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> Any:
        if self.family in inet and not _loopback(args[-1]):
            raise refuse("sendto", args[-1])
        return real["sendto"](self, data, *args)

    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> Any:
        if self.family in inet and len(args) >= 3 and args[2] is not None \
                and not _loopback(args[2]):
            raise refuse("sendto", args[2])
        return real["sendmsg"](self, buffers, *args)

    def guarded(name: str) -> Any:
        def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
            text = host.decode() if isinstance(host, bytes) else host
            if text is not None and not _loopback(text):
                _denied.append(f"lookup {text}")
                raise socket.gaierror(socket.EAI_NONAME, f"network denied: {text}")
            return lookups[name](host, *args, **kwargs)
        return lookup

    for name, method in (("connect", connect), ("connect_ex", connect_ex),
                         ("sendto", sendto), ("sendmsg", sendmsg)):
        setattr(socket.socket, name, method)
    for name in lookups:
        setattr(socket, name, guarded(name))


def build_app(graph: Any, graph_id: str) -> Starlette:
    """The ASGI app serving `graph` as the assistant `graph_id`."""

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"version": "foreign-serve", "graph_id": graph_id,
                             "flags": {"assistants": True, "crons": False},
                             "denied_connections": list(_denied)})

    async def search(request: Request) -> JSONResponse:
        return JSONResponse([{"assistant_id": graph_id, "graph_id": graph_id,
                              "name": graph_id, "config": {}, "metadata": {}}])

    async def wait(request: Request) -> JSONResponse:
        too_large = JSONResponse({"detail": "body too large"}, status_code=413)
        declared = request.headers.get("content-length") or "0"
        if not declared.isdigit():
            return JSONResponse({"detail": "bad Content-Length"}, status_code=400)
        if int(declared) > _MAX_BODY:
            return too_large
        raw = b""
        async for chunk in request.stream():  # a chunked body is counted as it comes
            raw += chunk
            if len(raw) > _MAX_BODY:
                return too_large
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return JSONResponse({"detail": "the body is not JSON"}, status_code=422)
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return JSONResponse({"detail": "expected {assistant_id, input: {...}}"},
                                status_code=422)
        if body.get("assistant_id") not in (graph_id, None):
            return JSONResponse({"detail": f"assistant {body.get('assistant_id')!r} not found"},
                                status_code=404)
        config = body.get("config") if isinstance(body.get("config"), dict) else {}
        configurable = {**(config.get("configurable") or {}),
                        **{h: v for h in _FORWARDED if (v := request.headers.get(h))}}
        try:
            left = float(request.headers.get("x-interlock-deadline-ms", "")) / 1000
        except ValueError:
            left = None
        try:
            values = await asyncio.wait_for(
                graph.ainvoke(body["input"], {**config, "configurable": configurable}),
                timeout=left)
        except TimeoutError:
            return JSONResponse({"detail": "the run did not finish within the caller's "
                                 "deadline"}, status_code=504)
        except Exception as exc:  # the graph's own failure: reported, not retried
            _log.warning("run failed: %s: %s", type(exc).__name__, exc)
            return JSONResponse({"__error__": {"error": type(exc).__name__,
                                               "message": str(exc)[:500]}})
        return JSONResponse(values if isinstance(values, dict) else {"value": values})

    return Starlette(routes=[
        Route("/ok", ok), Route("/info", info),
        Route("/assistants/search", search, methods=["POST"]),
        Route("/runs/wait", wait, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    """`python foreign/serve.py TARGET --graph-id ID [--host H] [--port P] [--deny-network]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="FILE.py:ATTR or MODULE:ATTR of a compiled graph")
    parser.add_argument("--graph-id", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deny-network", action="store_true")
    args = parser.parse_args(argv)
    if args.deny_network:
        deny_network()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    graph = load_graph(args.target)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    print(f"serving {args.graph_id} on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    # asyncio's loop and h11: pure Python, so --deny-network sees every connection.
    uvicorn.run(build_app(graph, args.graph_id), fd=sock.fileno(), log_level="warning",
                loop="asyncio", http="h11")


if __name__ == "__main__":
    main()
