"""The `interlock` command line: run, resume, history, demo (and simulators to serve over HTTP).

Exit codes: 0 completed, awaiting approval or refused by policy; 2 bad input or usage;
1 internal failure. A user never sees a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from graphs.errors import ConfigError, InputError, InterlockError
from graphs.runner import Interlock, RunResult, open_interlock
from graphs.settings import Settings
from graphs.state import STAFF, Actor

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code for usage errors is 2
        self.print_usage(sys.stderr)
        self.exit(2, f"interlock: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interlock", description=(
        "Interlock: a supervisor-worker support desk with guards, breakers and checkpoints."))
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run one request")
    run.add_argument("message", help="the request, e.g. 'Where is my order 1042?'")
    run.add_argument("--thread", help="continue this conversation (default: a new one)")
    run.add_argument("--customer", type=_customer_id, metavar="ID",
                     help="act as this customer (default: support staff)")
    run.add_argument("--json", action="store_true", help="print one JSON object")

    resume = commands.add_parser("resume", help="answer an approval, or continue a stopped run")
    resume.add_argument("thread")
    decision = resume.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve the pending refund")
    decision.add_argument("--reject", action="store_true", help="reject the pending refund")
    resume.add_argument("--note", default="", help="a note recorded with the decision")
    resume.add_argument("--json", action="store_true", help="print one JSON object")

    history = commands.add_parser("history", help="every step of a thread")
    history.add_argument("thread")
    history.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser("demo", help="play scripted conversations and print the transcript")

    simulate = commands.add_parser("simulate", help="serve a simulator over HTTP")
    simulate.add_argument("dependency", choices=("carrier", "payments"))
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=0, help="0: pick a free port")
    return parser


def _customer_id(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"a customer id is a positive integer, not {text!r}")
    return int(text)


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    print(f"thread {result.thread_id} · {result.status}")
    if result.answer:
        print(result.answer)
    if result.degraded:
        print(f"degraded: {', '.join(result.degraded)}")
    if result.pending_approval:
        print(f"approve with: interlock resume {result.thread_id} --approve   "
              f"(or --reject)")


def _exit_code(result: RunResult) -> int:
    if result.bad_input:
        return 2
    return 1 if result.status == "failed" else 0


def _print_history(steps: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(list(steps), ensure_ascii=False, default=str))
        return
    print(f"{'step':>4}  {'time':<27} {'node':<16} wrote / verdicts")
    for step in steps:
        nodes = step["nodes"] or ["-"]
        for node in nodes:
            wrote = ", ".join(step["writes"].get(node, [])) or "-"
            print(f"{step['step']:>4}  {str(step['created_at'] or ''):<27} {node:<16} {wrote}")
            for verdict in step["verdicts"]:
                reasons = "; ".join(verdict["reasons"])
                print(f"{'':>50}{verdict['guard']}: {verdict['action']} ({reasons})")
        for pending in step["interrupts"]:
            print(f"{'':>50}interrupt: {json.dumps(pending)}")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "demo":
        from graphs.demo import play

        return await play(settings)
    if args.command == "simulate":
        from tools.simulators.serve import serve

        await serve(args.dependency, settings, host=args.host, port=args.port)
        return 0
    async with open_interlock(settings) as app:
        return await _command(app, args)


async def _command(app: Interlock, args: argparse.Namespace) -> int:
    if args.command == "run":
        message: str = args.message
        try:
            message.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("The message is not valid UTF-8 text.") from None
        actor: Actor = (STAFF if args.customer is None
                        else Actor(kind="customer", customer_id=args.customer))
        result = await app.run(message, thread_id=args.thread, actor=actor)
    elif args.command == "resume":
        approve = True if args.approve else (False if args.reject else None)
        result = await app.resume(args.thread, approve=approve, note=args.note)
    else:
        steps = await app.history(args.thread)
        _print_history([dict(s) for s in steps], args.json)
        return 0
    _print_result(result, args.json)
    if result.bad_input and not args.json and result.error:
        print(f"interlock: {result.error['message']}", file=sys.stderr)
    return _exit_code(result)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `interlock` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return asyncio.run(_run(args, settings))
    except (InputError, ConfigError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"status": "refused", "error": exc.to_dict()}))
        print(f"interlock: {exc.message}", file=sys.stderr)
        return 2
    except InterlockError as exc:
        print(f"interlock: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interlock: interrupted; `interlock resume THREAD` continues a stopped run",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a user never sees a traceback
        print(f"interlock: internal error ({type(exc).__name__}: {exc}). If a run was under "
              f"way, `interlock resume THREAD` continues it from its last checkpoint.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
