"""No work at import: importing a package reads no settings, builds no graph, opens nothing.

Each check runs in a fresh interpreter, with an environment that would fail loudly if it
were read (a malformed model, an unreachable shared store, a home that cannot be created).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = {"INTERLOCK_MODEL": "not-a-model", "INTERLOCK_RESILIENCE_STORE": "redis://127.0.0.1:1/0",
           "INTERLOCK_HOME": "/proc/interlock-cannot-live-here"}


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True, capture_output=True,
                          env={**environ, **(env or {})}, timeout=120)


def test_importing_every_module_does_no_work() -> None:
    done = python(
        "import importlib, pathlib, sys\n"
        "names = ['.'.join(p.with_suffix('').parts).removesuffix('.__init__')\n"
        "         for pkg in ('graphs', 'agents', 'tools', 'guards', 'checkpoints')\n"
        "         for p in pathlib.Path(pkg).rglob('*.py')]\n"
        "for name in sorted(names):\n"
        "    if name not in ('graphs.server', 'graphs.aegra'):  # servers' entries: built there\n"
        "        importlib.import_module(name)\n"
        "import graphs.supervisor as s\n"
        "assert 'graph' not in vars(s), 'graphs.supervisor built a graph at import'\n"
        "assert 'graphs.server' not in sys.modules and 'graphs.aegra' not in sys.modules\n"
        "assert not pathlib.Path('/proc/interlock-cannot-live-here').exists()\n"
        "print(len(names))", HOSTILE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 60


def test_the_server_module_builds_the_graph_and_reads_the_settings() -> None:
    built = python("import graphs.server as s; print(type(s.graph).__name__)")
    assert built.returncode == 0 and "CompiledStateGraph" in built.stdout, built.stderr[-2000:]
    refused = python("import graphs.server", HOSTILE)
    assert refused.returncode != 0 and "INTERLOCK_MODEL" in refused.stderr


def loads_none_of(packages: tuple[str, ...], code: str, result: str, home: Path) -> None:
    """Run `code` in a fresh interpreter: none of `packages` loaded, and it prints `result`."""
    done = python(
        f"import sys\n{code}\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})\n"
        "assert not loaded, loaded\n", {"INTERLOCK_HOME": str(home)})
    assert done.returncode == 0 and done.stdout.strip() == result, done.stderr[-2000:]


def test_help_and_key_listing_load_no_langgraph(tmp_path: Path) -> None:
    loads_none_of(
        ("langgraph", "langchain_core", "langsmith", "openai", "pybreaker"),
        "import contextlib, io\n"
        "from graphs.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    assert main(['keys', 'list']) == 0\n"
        "print('usage' in out.getvalue())", "True", tmp_path)


def test_building_the_graph_with_the_rules_planner_loads_no_model_sdk(tmp_path: Path) -> None:
    loads_none_of(("openai", "langchain_openai"),
                  "from graphs.supervisor import build_graph\nbuild_graph()\nprint('ok')",
                  "ok", tmp_path)
