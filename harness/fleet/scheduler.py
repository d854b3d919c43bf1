"""The fleet's Dask scheduler: `harness fleet scheduler` (loopback unless told otherwise).

TLS and every other transport setting come from Dask's own configuration (environment variables such as
DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME=tls and DASK_DISTRIBUTED__COMM__TLS__CA_FILE, or a distributed.yaml):
the README's "Run on a fleet" section lists them.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.fleet import DEFAULT_PORT, require_distributed


async def serve_scheduler(host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                          on_ready: Callable[[str], None] | None = None) -> None:
    """Run a scheduler until it is closed (Ctrl-C or SIGTERM)."""
    import dask

    distributed = require_distributed()
    # Dask's HTTP endpoints (health, metrics) stay on loopback, on a free port, whatever --host says.
    with dask.config.set(SCHEDULER_DASK_CONFIG):
        scheduler = distributed.Scheduler(host=host, port=port, dashboard=False, dashboard_address="127.0.0.1:0")
    async with scheduler:
        if on_ready is not None:
            on_ready(scheduler.address)
        await scheduler.finished()


# Work stealing rebalances tasks between workers every 100 ms; a fleet's tasks are pinned to the one board that
# offers their device (a resource), so there is nothing to steal, and on a scheduler that shares a small board
# with a measurement its wake-ups only cost decode speed (benchmarks/fleet_overhead.py).
SCHEDULER_DASK_CONFIG = {"distributed.scheduler.work-stealing": False}
