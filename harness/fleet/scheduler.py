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
    distributed = require_distributed()
    # Dask's HTTP endpoints (health, metrics) stay on loopback, on a free port, whatever --host says.
    async with distributed.Scheduler(host=host, port=port, dashboard=False, dashboard_address="127.0.0.1:0") \
            as scheduler:
        if on_ready is not None:
            on_ready(scheduler.address)
        await scheduler.finished()
