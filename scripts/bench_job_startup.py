"""How long a local sweep job takes to start: a fresh interpreter importing the harness (what a
submitit local job did) against a process forked from the local launcher's preloaded server.

Interleaved in one process, 5 pairs; writes ``results/bench_startup.md``. Run from the repo root:
``python scripts/bench_job_startup.py``. The machine should be otherwise idle.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from robustsr_bench.bench import cpu_model
from robustsr_bench.launch_local import PRELOAD

IMPORTS = "import " + ", ".join(PRELOAD)


def _import_preloaded() -> None:
    exec(IMPORTS)  # noqa: S102 - the same import line the fresh interpreter runs


def _timed(start) -> float:
    t = time.perf_counter()
    start()
    return time.perf_counter() - t


def main(pairs: int = 5) -> str:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)

    def forked() -> None:
        p = ctx.Process(target=_import_preloaded)
        p.start()
        p.join()

    def fresh() -> None:
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)

    server = _timed(forked)  # starts the server: once per sweep
    load = os.getloadavg()[0]
    times = {"fresh": [], "forked": []}
    for _ in range(pairs):
        times["fresh"].append(_timed(fresh))
        times["forked"].append(_timed(forked))
    med = {k: statistics.median(v) for k, v in times.items()}
    return "\n".join([
        "# Local job start-up", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, load {load:.2f} at start; "
        f"`python scripts/bench_job_startup.py`, {pairs} interleaved pairs.", "",
        "| start | median s | all (s) |", "|---|---:|---|",
        f"| fresh interpreter, `{IMPORTS}` | {med['fresh']:.3f} | "
        + ", ".join(f"{x:.2f}" for x in times["fresh"]) + " |",
        "| forked from the preloaded server | " f"{med['forked']:.3f} | "
        + ", ".join(f"{x:.3f}" for x in times["forked"]) + " |", "",
        f"Starting the server itself (once per sweep): {server:.2f} s. "
        f"Ratio fresh/forked: {med['fresh'] / med['forked']:.0f}x.", ""])


if __name__ == "__main__":
    text = main()
    Path("results/bench_startup.md").write_text(text)
    print(text)
