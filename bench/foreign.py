"""Foreign agents: model calls per logical model call, native vs governed; their environments.

For the AutoGen team's model client and a CrewAI crew, each left at its framework's defaults
and pointed at the model directly ("native"), then governed (its own retries off, through
Interlock's gateway): with the model answering 429 (`Retry-After: 1`) to every call, then 503.
Counted at the model itself (`graphs.foreign.ScriptedModel`), and by the framework's side (the
requests it sent), per logical call over a run of them (20 governed: the breaker and the retry
budget act across calls; 2 native, which never change). Each measurement gets a fresh gateway.
`--install` also builds each environment from scratch, as `make foreign` does, timing it and
measuring its size.
Run: `.venv/bin/python bench/foreign.py [--calls 20] [--native-calls 2] [--install] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphs.foreign import QUIET, ScriptedModel, foreign_stack  # noqa: E402
from graphs.settings import Settings  # noqa: E402

VENVS = {"autogen": ".autogen-venv", "crewai": ".crewai-venv"}


def _run(framework: str, args: list[str], home: str) -> dict[str, Any]:
    python = ROOT / VENVS[framework] / "bin" / "python"
    done = subprocess.run([str(python), str(ROOT / "foreign" / framework / "measure.py"), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**QUIET, "PATH": os.environ.get("PATH", ""), "HOME": home})
    if done.returncode != 0:
        raise RuntimeError(f"{framework} measure failed: {done.stderr[-2000:]}")
    said: dict[str, Any] = json.loads(done.stdout)
    return said


async def measure(framework: str, failure: str, governed: bool, calls: int) -> dict[str, Any]:
    """One framework against one failing model: per logical call, over `calls` of them."""
    model = ScriptedModel(throttled={"*"} if failure == "429" else set(),
                          down={"*"} if failure == "503" else set())
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        async with foreign_stack(settings, model=model, workers=(),
                                 home=Path(home) / "stack") as stack:
            url = stack.gateway_url if governed else stack.model_url
            flag = "--gateway-url" if governed else "--model-url"
            if framework == "autogen":
                said = await asyncio.to_thread(_run, "autogen", [
                    flag, f"{failure}={url}", "--key", stack.key, "--calls", str(calls)], home)
                side = said["governed" if governed else "native"][failure]
                logical, sent, seconds = calls, side["requests_per_call"] * calls, side["seconds"]
            else:
                extra = ["--key", stack.key] if governed else []
                said = await asyncio.to_thread(_run, "crewai", [
                    flag, url, *extra, "--modes", failure, "--repeat", str(calls)], home)
                side = said["governed" if governed else "native"][failure]
                logical, sent, seconds = calls, side["requests"] * calls, side["seconds"]
            at_model = sum(model.calls.values())
    return {"framework": framework, "failure": failure, "calls": calls,
            "mode": "governed" if governed else "native",
            "sent_per_logical_call": round(sent / logical, 2),
            "model_calls_per_logical_call": round(at_model / logical, 2),
            "seconds_per_logical_call": round(seconds, 2)}


def install(framework: str) -> dict[str, Any]:
    """Build the environment from scratch as `make foreign` does: seconds and size."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{framework}-"))
    venv = folder / "venv"
    began = time.monotonic()
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-c",
                    str(ROOT / "foreign" / framework / "constraints.txt"), "-r",
                    str(ROOT / "foreign" / framework / "requirements.txt")], check=True)
    seconds = time.monotonic() - began
    size = int(subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    shutil.rmtree(folder, ignore_errors=True)
    return {"framework": framework, "install_s": round(seconds, 1),
            "size_mb": round(size / 1e6)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20,
                        help="logical calls per governed measurement (a crew kickoff is one)")
    parser.add_argument("--native-calls", type=int, default=2,
                        help="logical calls per native measurement (stock CrewAI spends ~27 s "
                             "on one throttled call)")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [await measure(fw, failure, governed, args.calls if governed else args.native_calls)
            for fw in ("autogen", "crewai") for failure in ("429", "503")
            for governed in (False, True)]
    installs = [install(fw) for fw in ("autogen", "crewai")] if args.install else []
    if args.json:
        print(json.dumps({"calls": rows, "installs": installs}))
        return
    print("| framework | model fails with | mode | logical calls | requests it sent | "
          "calls at the model | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['framework']} | {r['failure']} | {r['mode']} | {r['calls']} | "
              f"{r['sent_per_logical_call']} | {r['model_calls_per_logical_call']} | "
              f"{r['seconds_per_logical_call']} |")
    for i in installs:
        print(f"{i['framework']}: installed in {i['install_s']} s, {i['size_mb']} MB")


if __name__ == "__main__":
    asyncio.run(main())
