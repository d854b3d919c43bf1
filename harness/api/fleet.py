"""A fleet of boards (Dask distributed, the `fleet` extra): its scheduler, a board's worker, who is connected.

`harness fleet` is these functions with arguments parsed and lines printed; `run(fleet=ADDRESS)` runs a plan on
the boards connected. Serving blocks until interrupted (KeyboardInterrupt reaches the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.fleet import DEFAULT_PORT as DEFAULT_FLEET_PORT

if TYPE_CHECKING:
    from harness.fleet.worker import BoardConfig

__all__ = ["DEFAULT_FLEET_PORT", "FleetWorker", "fleet_status", "fleet_worker", "serve_fleet_scheduler",
           "serve_fleet_worker"]


@dataclass(frozen=True)
class FleetWorker:
    """A board's worker, resolved and not yet serving."""

    config: BoardConfig  # its name, device profile (and why), shard store
    resource: str  # the Dask resource it offers, device:NAME


def serve_fleet_scheduler(host: str = "127.0.0.1", port: int = DEFAULT_FLEET_PORT, *,
                          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the fleet's scheduler until interrupted; `on_ready` hears its address."""
    import asyncio

    from harness.fleet import require_distributed
    from harness.fleet.scheduler import serve_scheduler

    require_distributed()
    asyncio.run(serve_scheduler(host, port, on_ready=on_ready))


def fleet_worker(device: str = "auto", store: str | Path | None = None, name: str | None = None,
                 catalogs: Sequence[str] = ()) -> FleetWorker:
    """This board as a worker: its device profile (a name, a .toml or 'auto'), shard store and name."""
    from harness.fleet import device_resource, require_distributed
    from harness.fleet.worker import board_config

    require_distributed()
    config = board_config(device, store, name, list(catalogs))
    return FleetWorker(config, device_resource(config.device))


def serve_fleet_worker(scheduler: str, worker: FleetWorker, *, listen_host: str | None = None,
                       connect_timeout_s: float = 60.0, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve this board to the scheduler, one benchmark at a time, until interrupted; UsageError when the scheduler
    cannot be reached."""
    import asyncio

    from harness.fleet.worker import serve_worker

    try:
        asyncio.run(serve_worker(scheduler, worker.config, listen_host=listen_host, on_ready=on_ready,
                                 connect_timeout_s=connect_timeout_s))
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the fleet scheduler at {scheduler} ({exc}): start `harness fleet "
                         "scheduler` there and check the address") from exc


def fleet_status(scheduler: str) -> dict[str, list[dict[str, Any]]]:
    """Every device some worker connected to the scheduler offers, with those workers (name, address, host, pid)."""
    from harness.fleet.coordinator import FleetClient

    with FleetClient(scheduler) as fleet:
        return fleet.devices()
