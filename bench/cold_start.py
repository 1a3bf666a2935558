"""CLI cold start: `interlock --help`, `run` of a status question, `history`, `keys list`.

Each command runs as a fresh process (median of N), next to `python -c "import langgraph.graph"`
on the same machine, and is reported as a ratio to it. Also counts, per command, whether
LangGraph was imported at all (`-X importtime`). Run: `.venv/bin/python bench/cold_start.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(argv: list[str], env: dict[str, str], n: int) -> float:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        took.append(time.perf_counter() - start)
        if done.returncode not in (0,):
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
    return statistics.median(took) * 1000


def _imports_langgraph(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    return any(re.search(r"\|\s*langgraph(?:\.graph)?$", line.rstrip())
               for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="runs per command (median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    python = sys.executable
    cli = [python, "-m", "graphs.cli"]
    with tempfile.TemporaryDirectory(prefix="interlock-cold-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERLOCK_", "LANG"))}
        env["INTERLOCK_HOME"] = home
        warm = subprocess.run([*cli, "run", "Where is order 1042?", "--thread", "cold",
                               "--json"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert warm.returncode == 0, warm.stderr
        commands = {
            "python -c 'import langgraph.graph'": [python, "-c", "import langgraph.graph"],
            "interlock --help": [*cli, "--help"],
            "interlock keys list": [*cli, "keys", "list"],
            "interlock run (status question)": [*cli, "run", "Where is order 1042?", "--json"],
            "interlock history": [*cli, "history", "cold", "--json"],
        }
        figures = {name: _time(argv, env, args.n) for name, argv in commands.items()}
        loads = {name: _imports_langgraph(argv, env) for name, argv in commands.items()}
    base = figures["python -c 'import langgraph.graph'"]
    if args.json:
        print(json.dumps({"ms": figures, "ratio": {k: v / base for k, v in figures.items()},
                          "imports_langgraph": loads}))
        return
    print(f"median of {args.n} cold runs each")
    print("| command | median ms | / import langgraph.graph | imports LangGraph |")
    print("|---|---:|---:|---|")
    for name, ms in figures.items():
        print(f"| `{name}` | {ms:.0f} | {ms / base:.2f}x | {'yes' if loads[name] else 'no'} |")


if __name__ == "__main__":
    main()
