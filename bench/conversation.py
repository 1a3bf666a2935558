"""Per-turn latency of a five-turn conversation in one thread (`python bench/conversation.py`)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from graphs.core.actors import Actor
from graphs.runner import open_interlock
from graphs.settings import Settings

SCRIPT = ["Where is my order 1012?", "when did it arrive?", "what was the total again?",
          "Can I get a refund on it?"]
async def main() -> None:
    """Run 40 threads of the script; print the median per turn (the first 5 threads warm up)."""
    async with open_interlock(Settings(home=Path(tempfile.mkdtemp()))) as app:
        per = {i: [] for i in range(len(SCRIPT))}
        for n in range(40):
            for i, m in enumerate(SCRIPT):
                t = time.perf_counter()
                await app.run(m, thread_id=f"c{n}",
                              actor=Actor(kind="customer", customer_id=9))
                per[i].append((time.perf_counter() - t) * 1000)
        print("| turn | message | median ms |\n|---|---|---:|")
        for i, m in enumerate(SCRIPT):
            print(f"| {i+1} | {m} | {statistics.median(per[i][5:]):.1f} |")

if __name__ == "__main__":
    asyncio.run(main())
