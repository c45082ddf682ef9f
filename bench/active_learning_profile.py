"""Where a server-side active-learning round spends its time (in process, through the job manager).

Runs rounds of ``active-learning-round`` exactly as pygeoapi does for a synchronous execution
(``PgJobManager.execute_process``: job row, progress, the processor, result stored) on the pool a
``bench/active_learning.py --keep`` run left in the database, and prints the wall time per round,
the numpy round's own split, and the top functions of a cProfile of the warm rounds.

    EOFUSION_DATA_DIR=... .venv/bin/python bench/active_learning_profile.py [--rounds 10] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.db import connect, database_url  # noqa: E402
from eofusion.config import Settings  # noqa: E402
from plugins.jobs import PgJobManager  # noqa: E402

COLLECTION = "bench-active-learning"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    url = database_url(Settings.from_env())
    with connect(url) as conn:
        n = conn.execute("SELECT count(*) FROM eofusion.descriptors WHERE collection = %s", (COLLECTION,)).fetchone()
    if not n or not n[0]:
        sys.exit(f"no pool {COLLECTION!r}: run bench/active_learning.py --keep first")
    manager = PgJobManager({"name": "plugins.jobs.PgJobManager", "connection": url, "output_dir": None})
    manager.processes = {"active-learning-round": {"processor": {
        "name": "plugins.active.ActiveLearningRoundProcessor", "database_url": url, "files_dir": "/tmp"}}}
    rng = np.random.default_rng(0)
    items = rng.choice(int(n[0]), 200, replace=False)

    def marks(idx: np.ndarray, positive: bool) -> list[dict]:
        return [{"item": f"p{i:07d}", "positive": positive} for i in idx.tolist()]

    def run(inputs: dict) -> tuple[float, dict]:
        t = time.perf_counter()
        _, _, out, status, _ = manager.execute_process("active-learning-round", inputs)
        if status.value != "successful":
            raise RuntimeError(out)
        return time.perf_counter() - t, out

    cold, first = run({"pool": COLLECTION, "descriptor": "s2", "feedback": marks(items[:5], True) +
                       marks(items[5:10], False), "n_top": 100})
    session = first["session"]
    run({"session": session, "feedback": marks(items[10:15], False), "n_top": 100})  # warm-up
    prof = cProfile.Profile()
    times, numpy_times = [], []
    for r in range(args.rounds):
        lo = 15 + 5 * r
        prof.enable()
        dt, out = run({"session": session, "feedback": marks(items[lo:lo + 2], True) +
                       marks(items[lo + 2:lo + 5], False), "n_top": 100})
        prof.disable()
        times.append(dt)
        numpy_times.append(out["metrics"]["total_seconds"])
    print(f"first round (reads and maps the pool): {cold * 1000:.0f} ms")
    print(f"warm rounds through the job manager: p50 {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms; numpy round (fit + score + queries) p50 "
          f"{statistics.median(numpy_times) * 1000:.0f} ms ({args.rounds} rounds, labels up to "
          f"{15 + 5 * args.rounds})")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(args.top)
    print(buf.getvalue())


if __name__ == "__main__":
    main()
