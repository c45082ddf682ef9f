"""The dask.distributed client for ingest: a LocalCluster sized to the machine, or an existing scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from eofusion.pipeline.scene import cpu_count


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Yield a ``dask.distributed.Client``.

    Args:
        scheduler: Address of an existing scheduler (``tcp://host:8786``); None starts a LocalCluster
            with one single-threaded worker process per core (numpy releases the GIL only in part,
            so processes scale better than threads here) sharing 80% of the memory.
        workers: Number of local workers (default: the cores available).
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or cpu_count()
    memory = int(psutil.virtual_memory().total * 0.8 / n)
    with LocalCluster(n_workers=n, threads_per_worker=1, memory_limit=memory, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
