"""The `interlock` command line: run, resume, history, demo (and simulators to serve over HTTP).

Exit codes: 0 completed, awaiting approval or refused by policy; 2 bad input or usage;
1 internal failure (and, for `replay`, a run that does not reproduce). A user never sees a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphs.core.actors import STAFF, Actor
from graphs.core.errors import ConfigError, InputError, InterlockError
from graphs.settings import Settings

if TYPE_CHECKING:  # imported when needed: importing the graph reads the (validated) settings
    from graphs.runner import Interlock, RunResult

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
    resume.add_argument("--digest", help="the digest of the approval you answer (as shown "
                                         "while it waits); required when several wait")
    resume.add_argument("--json", action="store_true", help="print one JSON object")

    history = commands.add_parser("history", help="every step of a thread")
    history.add_argument("thread")
    history.add_argument("--json", action="store_true", help="print JSON")

    asof = commands.add_parser("asof", help="what was known at a moment or step")
    asof.add_argument("thread")
    when = asof.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=_moment, help="an ISO-8601 time with a zone")
    when.add_argument("--step", type=int, help="a step number (see history)")
    asof.add_argument("--json", action="store_true", help="print JSON")

    diff = commands.add_parser("diff", help="what changed between two steps")
    diff.add_argument("thread")
    diff.add_argument("a", type=int)
    diff.add_argument("b", type=int)
    diff.add_argument("--json", action="store_true", help="print JSON")

    explain = commands.add_parser("explain", help="where a fact came from and what used it")
    explain.add_argument("thread")
    explain.add_argument("fact", help="a fact id, e.g. order:1042")
    explain.add_argument("--json", action="store_true", help="print JSON")

    replay = commands.add_parser("replay", help="re-execute a thread on its recorded results")
    replay.add_argument("thread")
    replay.add_argument("--from", dest="from_step", type=int, help="a step (default: the start)")
    replay.add_argument("--json", action="store_true", help="print JSON")

    fork = commands.add_parser("fork", help="a new thread from a step, for what-if runs")
    fork.add_argument("thread")
    fork.add_argument("--from", dest="from_step", type=int, required=True, help="a step")
    fork.add_argument("--message", help="a request to run on the new thread")
    fork.add_argument("--json", action="store_true", help="print JSON")

    keys = commands.add_parser("keys", help="API keys of the LangGraph server")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    add = key_commands.add_parser("add", help="create a key (printed once, stored hashed)")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--staff", action="store_true", help="a key for support staff")
    who.add_argument("--customer", type=_customer_id, metavar="ID", help="a key for a customer")
    add.add_argument("--label", default="", help="whose key it is")
    key_commands.add_parser("list", help="list keys (ids and whom they stand for)")

    trace = commands.add_parser("trace", help="a run's timeline, from its checkpoints (offline)")
    trace.add_argument("thread")
    trace.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained page")
    trace.add_argument("--json", action="store_true", help="print JSON")

    graph = commands.add_parser("graph", help="draw the graph (offline)")
    shape = graph.add_mutually_exclusive_group()
    shape.add_argument("--mermaid", action="store_true", help="print Mermaid text (default)")
    shape.add_argument("--html", type=Path, metavar="FILE", help="write an SVG page")

    assess = commands.add_parser("assess", help="a readiness scorecard of any LangGraph graph "
                                               "(read and probed; offline)")
    assess.add_argument("target", help="path/to/file.py:attr, package.module:attr, or a "
                                       "langgraph.json (every graph in it)")
    assess.add_argument("--input", type=Path, metavar="FILE",
                        help="the probes' request(s): a JSON object, or a list of them")
    assess.add_argument("--json", action="store_true", help="print the scorecard as one object")
    assess.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the scorecard as one self-contained page with charts")
    assess.add_argument("--hang-cap", type=float, default=10.0, metavar="SECONDS",
                        help="how long a request may take while every dependency hangs before "
                             "it counts as not back (default 10)")

    prune = commands.add_parser("prune", help="retention: delete idle threads, shorten long ones")
    prune.add_argument("--older-than", type=float, metavar="DAYS",
                       help="delete threads whose latest step is older than this")
    prune.add_argument("--keep-last", type=int, metavar="N",
                       help="keep each thread's N newest checkpoints (and the ancestors their "
                            "delta channels need)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    prune.add_argument("--vacuum", action="store_true", help="then give the space back")
    prune.add_argument("--json", action="store_true", help="print JSON")

    storage = commands.add_parser("storage", help="checkpoint rows and bytes on disk")
    storage.add_argument("--json", action="store_true", help="print JSON")

    demo = commands.add_parser("demo", help="play scripted conversations and print the "
                                            "transcript")
    demo.add_argument("--foreign", action="store_true",
                      help="the foreign agents (an AutoGen team, a CrewAI crew) as governed "
                           "workers, a scripted model behind the gateway (`make foreign`)")

    chaos = commands.add_parser("chaos", help="inject a failure; compare governed and naive")
    chaos.add_argument("scenario", choices=("carrier-outage", "carrier-slow", "carrier-flaky",
                                            "payments-flaky", "model-throttled", "model-flaky",
                                            "crew-throttled", "remote-down"))
    chaos.add_argument("--requests", type=_positive, default=200)
    chaos.add_argument("--concurrency", type=_positive, default=16)
    chaos.add_argument("--json", action="store_true", help="print the figures as one object")
    chaos.add_argument("--fail-rate", type=_share, metavar="SHARE",
                       help="share of the dependency's calls that fail with 503 (0..1), "
                            "instead of the scenario's")
    chaos.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)

    simulate = commands.add_parser("simulate", help="serve a simulator over HTTP")
    simulate.add_argument("dependency", help="a registered dependency with a simulator "
                                            "(carrier, payments, or one INTERLOCK_EXTENSIONS "
                                            "declares)")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=0, help="0: pick a free port")

    gateway = commands.add_parser("gateway", help="serve the governed model gateway "
                                                  "(OpenAI-compatible) in front of the model")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=0, help="0: pick a free port")
    return parser


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. {text}Z")
    return moment


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, not {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return int(text)


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
        digest = result.pending_approval.get("digest")
        bound = f" --digest {digest}" if digest else ""
        print(f"approve with: interlock resume {result.thread_id} --approve{bound}   "
              f"(or --reject)")


def _exit_code(result: RunResult) -> int:
    if result.bad_input:
        return 2
    return 1 if result.status == "failed" else 0


def _print_history(steps: Sequence[dict[str, Any]]) -> None:
    print(f"{'step':>4}  {'time':<26}  {'node':<14}  wrote")
    for step in steps:
        time = str(step["created_at"] or "")[:26]
        for n, node in enumerate(step["nodes"] or ["-"]):
            wrote = ", ".join(step["writes"].get(node, [])) or "-"
            print(f"{step['step'] if n == 0 else '':>4}  {time if n == 0 else '':<26}  "
                  f"{node:<14}  {wrote}")
        for verdict in step["verdicts"]:
            where = f" {verdict['step_id']}" if verdict.get("step_id") else ""
            print(f"{'':>48}{verdict['guard']}{where}: {verdict['action']} "
                  f"({'; '.join(verdict['reasons'])})")
        for event in step["events"]:
            if event["kind"] != "attempt" or event["detail"].get("outcome") != "ok":
                print(f"{'':>48}{event['kind']} {event['dependency']}: "
                      + ", ".join(f"{k}={v}" for k, v in event["detail"].items()
                                  if v is not None))
        for pending in step["interrupts"]:
            print(f"{'':>48}waiting: {json.dumps(pending)}")


def _print_asof(view: dict[str, Any]) -> None:
    print(f"thread {view['thread_id']} · step {view['step']} · {view['created_at']} · "
          f"status {view['status']}")
    request = view.get("request") or {}
    if request:
        print(f"request (turn {request.get('turn')}): {request.get('text')!r}")
    plan = view.get("plan")
    if plan:
        print("plan: " + " then ".join("[" + ", ".join(wave) + "]" for wave in plan["waves"]))
    print("facts in force:")
    for fid, fact in view["facts"].items():
        version = f" {fact['version']}" if fact.get("version") else ""
        print(f"  {fid:<22} {fact['source']}{version} as of {fact['as_of']} "
              f"({fact['worker']} {fact['worker_version']}, {fact['step_id']})")
    if not view["facts"]:
        print("  (none yet)")
    for pending in view["pending_approvals"]:
        print(f"pending approval: {json.dumps(pending)}")
    print(f"verdicts so far: {len(view['verdicts'])}")
    for verdict in view["verdicts"]:
        print(f"  {verdict['guard']}: {verdict['action']} ({'; '.join(verdict['reasons'])})")


def _print_diff(result: dict[str, Any]) -> None:
    print(f"thread {result['thread_id']} · step {result['from']['step']} -> "
          f"{result['to']['step']}")
    for key, change in result["changes"].items():
        if "appended" in change:
            print(f"{key}: +{len(change['appended'])}")
            for item in change["appended"]:
                print(f"  + {json.dumps(item, default=str)[:160]}")
        elif {"added", "removed", "changed"} <= set(change):
            print(f"{key}:")
            for k in change["added"]:
                print(f"  + {k}")
            for k in change["removed"]:
                print(f"  - {k}")
            for k in change["changed"]:
                print(f"  ~ {k}")
        else:
            print(f"{key}: {json.dumps(change['before'], default=str)[:80]} -> "
                  f"{json.dumps(change['after'], default=str)[:80]}")


def _print_explain(result: dict[str, Any]) -> None:
    print(f"fact {result['fact_id']} in thread {result['thread_id']}")
    for version in result["versions"]:
        made = version["produced_by"]
        print(f"  committed at step {version['committed_at_step']}: by {made['worker']} "
              f"{made['worker_version']} for plan step {made['step_id']}, from "
              f"{made['source']}{' ' + made['version'] if made['version'] else ''} "
              f"as of {made['as_of']}")
        for event in version["dependency_calls"]:
            print(f"    {event['kind']} {event['dependency']}: " + ", ".join(
                f"{k}={v}" for k, v in event["detail"].items() if v is not None))
    print("used by:")
    for verdict in result["used_by"]["verdicts"]:
        print(f"  {verdict['guard']} ({verdict.get('step_id') or 'request'}): "
              f"{verdict['action']} - {'; '.join(verdict['reasons'])}")
    for step in result["used_by"]["steps"]:
        print(f"  plan step {step['id']} ({step['worker']})")


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from graphs.keys import add_key, load_keys

    path = settings.api_keys_path
    if args.keys_command == "add":
        actor: Actor = (STAFF if args.staff
                        else Actor(kind="customer", customer_id=args.customer))
        entry, key = add_key(path, actor, label=args.label)
        who = "staff" if args.staff else f"customer {args.customer}"
        print(f"{key}\n(key {entry.id} for {who}, stored hashed in {path}; it is shown only "
              f"once)", file=sys.stdout)
        return 0
    for entry in load_keys(path):
        who = ("staff" if entry.actor["kind"] == "staff"
               else f"customer {entry.actor['customer_id']}")
        print(f"{entry.id}  {who:<14} {entry.label}")
    return 0


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "assess":
        from graphs.assess import assess
        from graphs.assess.intercept import guard_network

        # For the life of this process: a worker thread of the assessed graph still retrying
        # after the assessment (or while the loop shuts down) cannot reach the network.
        guard_network().__enter__()

        inputs = None
        if args.input is not None:
            try:
                given = json.loads(args.input.read_text())
            except (OSError, ValueError) as exc:
                raise InputError(f"Cannot read {args.input}: {exc}.", field="input") from None
            inputs = given if isinstance(given, list) else [given]
        if not 0 < args.hang_cap <= 600:
            raise InputError("--hang-cap takes seconds between 0 and 600.", field="hang_cap")
        card = await assess(args.target, inputs=inputs, hang_cap_s=args.hang_cap)
        if args.html is not None:
            from graphs.assess.html import scorecard_html

            try:
                args.html.write_text(scorecard_html(card.to_json()), encoding="utf-8")
            except OSError as exc:
                raise InputError(f"Cannot write {args.html}: {exc}.", field="html") from None
        print(json.dumps(card.to_json(), ensure_ascii=False) if args.json else card.to_text())
        if args.html is not None and not args.json:
            print(f"\nwrote {args.html}")
        return 0
    if args.command == "demo" and args.foreign:
        from graphs.foreign_scenarios import play_foreign

        return await play_foreign(settings)
    if args.command == "demo":
        from graphs.demo import play

        return await play(settings)
    if args.command == "graph":
        from graphs.supervisor import build_graph
        from graphs.views import graph_html, graph_mermaid

        compiled = build_graph(settings=settings)
        if args.html:
            args.html.write_text(graph_html(compiled))
            print(f"wrote {args.html}")
        else:
            print(graph_mermaid(compiled))
        return 0
    if args.command == "chaos" and args.scenario in ("crew-throttled", "remote-down"):
        from graphs.foreign_scenarios import format_foreign_report, run_foreign_chaos

        foreign = await run_foreign_chaos(settings, args.scenario,
                                          requests=min(args.requests, 20))
        print(json.dumps(foreign.to_json()) if args.json else format_foreign_report(foreign))
        return 0
    if args.command == "chaos":
        from graphs.chaos import format_report, run_scenario

        report = await run_scenario(args.scenario, requests=args.requests,
                                    concurrency=args.concurrency, settings=settings,
                                    time_scale=args.time_scale, fail_rate=args.fail_rate)
        print(json.dumps(report.to_dict()) if args.json else format_report(report))
        return 0
    if args.command in ("prune", "storage"):
        return await _retention(args, settings)
    if args.command == "gateway":
        from graphs.gateway import serve as serve_gateway

        await serve_gateway(settings, host=args.host, port=args.port)
        return 0
    if args.command == "simulate":
        from tools.simulators.serve import serve

        await serve(args.dependency, settings, host=args.host, port=args.port)
        return 0
    from graphs.runner import open_interlock

    async with open_interlock(settings) as app:
        return await _command(app, args)


async def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict
    from datetime import timedelta

    from checkpoints.retention import prune, storage_report, vacuum
    from checkpoints.saver import open_saver

    if args.command == "prune":
        if args.older_than is None and args.keep_last is None and not args.vacuum:
            raise InputError("Say what to prune: --older-than DAYS and/or --keep-last N "
                             "(--vacuum alone only gives space back).", field="prune")
        if args.keep_last is not None and args.keep_last < 1:
            raise InputError("--keep-last takes 1 or more.", field="keep_last")
        if args.older_than is not None and args.older_than < 0:
            raise InputError("--older-than takes days, 0 or more.", field="older_than")
    async with open_saver(database_url=settings.database_url,
                          path=settings.checkpoints_path) as saver:
        before = await storage_report(saver)
        data: dict[str, Any] = {"before": before}
        if args.command == "prune":
            from graphs.supervisor import build_graph

            # The graph reads what its delta channels hold, for the snapshot prune writes.
            report = await prune(saver, now=datetime.now(UTC),
                                 older_than=None if args.older_than is None
                                 else timedelta(days=args.older_than),
                                 keep_last=args.keep_last, dry_run=args.dry_run,
                                 graph=build_graph(checkpointer=saver, settings=settings))
            data["pruned"] = asdict(report)
            if args.vacuum and not args.dry_run:
                await vacuum(saver)
            data["after"] = await storage_report(saver)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    where = settings.database_url.rpartition("@")[2] if settings.database_url else str(
        settings.checkpoints_path)
    for label in ("before", "after"):
        if label in data:
            shown = data[label]
            rows = ", ".join(f"{n} {t}" for t, n in shown["rows"].items())
            free = f", {shown['free_bytes']:,} free" if "free_bytes" in shown else ""
            print(f"{label if 'pruned' in data else where}: {shown['threads']} threads; "
                  f"{rows}; {shown['bytes']:,} bytes{free}")
    if "pruned" in data:
        p = data["pruned"]
        verb = "would delete" if p["dry_run"] else "deleted"
        print(f"{verb} {p['threads_deleted']} idle threads and {p['checkpoints_deleted']} "
              f"checkpoints; kept {p['checkpoints_kept']} ({p['snapshots_written']} of them "
              f"first made full snapshots of their delta channels, so every kept one reads "
              f"as before)"
              + (f"; {p['namespaces_skipped']} subgraph namespaces left whole"
                 if p["namespaces_skipped"] else ""))
    return 0


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
        if args.digest and approve is None:
            raise InputError("--digest names the approval you answer: give --approve or "
                             "--reject with it.", field="digest")
        result = await app.resume(args.thread, approve=approve, note=args.note,
                                  digest=args.digest)
    elif args.command in ("replay", "fork"):
        return await _replay_or_fork(app, args)
    elif args.command == "trace":
        return await _trace(app, args)
    else:
        return await _inspect(app, args)
    _print_result(result, args.json)
    if result.bad_input and not args.json and result.error:
        print(f"interlock: {result.error['message']}", file=sys.stderr)
    return _exit_code(result)


async def _replay_or_fork(app: Interlock, args: argparse.Namespace) -> int:
    from graphs.core.answers import plural
    from graphs.replay import fork, replay

    if args.command == "replay":
        report = await replay(app, args.thread, from_step=args.from_step)
        if args.json:
            print(json.dumps(report, ensure_ascii=False, default=str))
        elif report["reproduced"]:
            called = report["dependencies_called"]
            print(f"reproduced: the {plural(report['steps_compared'], 'step')} after step "
                  f"{report['from_step']} match the recording "
                  f"({plural(report['results_served'], 'recorded result')} served, "
                  + (f"{plural(called, 'dependency call')} attempted)" if called
                     else "no dependency called)"))
        else:
            diff = report["first_difference"]
            print(f"DIFFERS at step {diff['step']}"
                  + (f" ({diff['node']})" if diff.get("node") else "") + f": {diff['what']}")
            for key in diff.get("keys", []):
                print(f"  {key}:\n    recorded: {json.dumps(diff['recorded'][key], default=str)}"
                      f"\n    replayed: {json.dumps(diff['replayed'][key], default=str)}")
            if not diff.get("keys"):
                print(f"  recorded: {diff['recorded']}\n  replayed: {diff['replayed']}")
        return 0 if report["reproduced"] else 1
    new_thread, result = await fork(app, args.thread, from_step=args.from_step,
                                    message=args.message)
    if args.json:
        print(json.dumps({"thread_id": new_thread, "forked_from": args.thread,
                          "from_step": args.from_step,
                          "result": result.to_json() if result else None}, default=str))
        return 0
    print(f"forked {args.thread} at step {args.from_step} into {new_thread}")
    if result is not None:
        _print_result(result, False)
    return 0


async def _trace(app: Interlock, args: argparse.Namespace) -> int:
    from checkpoints.timeline import timeline
    from graphs.core.clock import parse_iso as _at
    from graphs.views import timeline_html

    data = await timeline(app.graph, args.thread)
    if args.html:
        args.html.write_text(timeline_html(data))
        print(f"wrote {args.html}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, default=str))
    elif not args.html:
        for number, segment in enumerate(data["segments"], start=1):
            print(f"segment {number} · {segment['start']} · waited "
                  f"{segment['after_wait_s']:.1f}s for {segment['waited_for']}")
            for item in sorted(segment["spans"] + segment["marks"],
                               key=lambda i: i.get("start") or i.get("at") or ""):
                when = item.get("start") or item.get("at")
                took = (f"{(_at(item['end']) - _at(item['start'])).total_seconds() * 1000:8.1f} ms"
                        if item.get("end") else " " * 11)
                print(f"  {str(when)[11:23]}  {took}  {item['kind']:<8} {item['name']}"
                      + (f"  ({item['detail']})" if item.get("detail") else ""))
    return 0


async def _inspect(app: Interlock, args: argparse.Namespace) -> int:
    data: Any
    if args.command == "history":
        data = await app.history(args.thread)
        show: Any = _print_history
    elif args.command == "asof":
        data = await app.asof(args.thread, at=args.at, step=args.step)
        show = _print_asof
    elif args.command == "diff":
        data = await app.diff(args.thread, args.a, args.b)
        show = _print_diff
    else:
        data = await app.explain(args.thread, args.fact)
        show = _print_explain
    if args.json:
        print(json.dumps(data, ensure_ascii=False, default=str))
    else:
        show(data)
    return 0


def _print_error(args: argparse.Namespace, exc: InterlockError, status: str) -> None:
    """The error on stderr; with --json also the contract's object on stdout."""
    if getattr(args, "json", False) and args.command in ("run", "resume"):
        print(json.dumps({"thread_id": getattr(args, "thread", None), "status": status,
                          "answer": exc.message, "degraded": [], "pending_approval": None,
                          "checkpoint_id": None, "error": exc.to_dict()},
                         ensure_ascii=False))
    elif getattr(args, "json", False):
        print(json.dumps({"status": status, "error": exc.to_dict()}, ensure_ascii=False))
    print(f"interlock: {exc.message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `interlock` command."""
    args = _parser().parse_args(argv)
    tracer = None
    try:
        settings = Settings.from_env()
        if args.command == "keys":
            return _keys(args, settings)
        from graphs.tracing import configure_tracing

        tracer = configure_tracing()
        import asyncio  # here, not at the top: `--help` and `keys` need no event loop

        return asyncio.run(_run(args, settings))
    except (InputError, ConfigError) as exc:
        _print_error(args, exc, "refused")
        return 2
    except InterlockError as exc:
        _print_error(args, exc, "failed")
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interlock: interrupted; `interlock resume THREAD` continues a stopped run",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a user never sees a traceback
        print(f"interlock: internal error ({type(exc).__name__}: {exc}). If a run was under "
              f"way, `interlock resume THREAD` continues it from its last checkpoint.",
              file=sys.stderr)
        return 1
    finally:
        if tracer is not None:
            from graphs.tracing import close_tracing

            if not close_tracing(tracer):
                print("interlock: LangSmith did not answer in time; this run's traces were "
                      "not all delivered", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
