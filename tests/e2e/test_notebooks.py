"""The notebooks run top to bottom in a fresh kernel, each in under a minute.

04_readiness waits out real hangs (a 10 s cap for each of four graphs whose dependencies hang),
so it gets two.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


LIMIT_S = {"04_readiness.ipynb": 120}


def test_there_are_four_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_failure_modes.ipynb",
                                           "03_audit_and_replay.ipynb", "04_readiness.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_fresh_kernel(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(book, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent.parent)}}).execute()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S.get(path.name, 60), f"{path.name} took {elapsed:.0f}s"
    errors = [o for cell in book.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # A cell that draws a plot shows it: an image among its outputs (a non-interactive
    # backend would draw it nowhere, and the executed notebook would hold no picture).
    for number, cell in enumerate(book.cells):
        if cell.cell_type == "code" and "plt." in cell.source:
            images = [o for o in cell.get("outputs", [])
                      if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})]
            assert len(images) == cell.source.count("plt.show()") or (
                images and "plt.show()" not in cell.source), (path.name, number, cell.source[:80])
            for image in images:
                png = image["data"].get("image/png")
                if png:  # a picture, not an empty canvas
                    assert len(base64.b64decode(png)) > 5000, (path.name, number)
