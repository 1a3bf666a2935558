"""One-way layers, measured from the code: what each package may import of ours.

- `graphs.core` (the shared contracts) imports nothing of ours outside itself;
- the control plane (`tools`, `checkpoints`) imports only the core and `tools`: it knows no
  worker, guard or assembly module;
- `agents` (workers, planner, responder) import the core and `tools`, never `guards` or the
  assembly; `guards` import the core and `tools`, never `agents` or the assembly;
- the assembly (the rest of `graphs`) may import anything.
Direct imports are checked for every module, so the rules hold for indirect imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("graphs", "agents", "tools", "guards", "checkpoints")
ALLOWED: dict[str, tuple[str, ...]] = {
    "graphs.core": ("graphs.core",),
    "tools": ("graphs.core", "tools"),
    "checkpoints": ("graphs.core", "tools", "checkpoints"),
    "agents": ("graphs.core", "tools", "agents"),
    "guards": ("graphs.core", "tools", "guards"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Our modules `path` imports, at module level or inside functions alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def layer_of(module: str) -> str | None:
    if module == "graphs.core" or module.startswith("graphs.core."):
        return "graphs.core"
    top = module.split(".")[0]
    return None if top == "graphs" else top


def within(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("module", sorted(modules()))
def test_each_module_imports_only_what_its_layer_may(module: str) -> None:
    layer = layer_of(module)
    if layer is None:
        return  # the assembly stands on everything
    bad = sorted(i for i in imports(modules()[module]) if not within(i, ALLOWED[layer]))
    assert not bad, f"{module} ({layer}) imports {bad}; it may import only {ALLOWED[layer]}"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    # The check itself can fail: a control-plane module importing a guard is found.
    bad = tmp_path / "bad.py"
    bad.write_text("from guards.approval import policy_reasons\nimport graphs.supervisor\n")
    found = sorted(i for i in imports(bad) if not within(i, ALLOWED["tools"]))
    assert found == ["graphs.supervisor", "guards.approval"]
