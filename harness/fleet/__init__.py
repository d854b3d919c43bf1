"""Running one plan on a fleet of devices through Dask distributed (the `fleet` extra).

- `harness fleet scheduler` starts a Dask scheduler (loopback unless told otherwise).
- `harness fleet worker --device NAME` on each board starts a Dask worker that advertises the resource
  `device:NAME = 1` (one benchmark per board at a time) and reports the board's host facts.
- `harness run --fleet ADDRESS --device A --device B ...` splits the plan by device into one task per
  (device, model variant), pinned to the device's resource. Each task runs the unchanged engine in a fresh
  process on its board (`harness.fleet.job`), into the board's shard store, and streams each finished row
  back; the coordinator merges them into the main store as they arrive (harness.merge), so re-running the
  command skips what the main store holds.

Modules: `wire` (what travels), `job` (the engine on a board), `worker` (the Dask worker and its task),
`scheduler`, `coordinator` (the fleet run).
"""

from __future__ import annotations

from typing import Any

from harness.errors import require

DEVICE_RESOURCE_PREFIX = "device:"
DEFAULT_PORT = 8786
DEFAULT_WAIT_S = 120.0  # how long a device may have no worker before a fleet run reports it missing
PLUGIN_NAME = "harness"  # the worker plugin holding the board's settings
INFO_KEY = "harness"  # the key of a worker's host facts in the scheduler's worker information


def device_resource(device: str) -> str:
    """The Dask resource a board running `device` advertises (one unit: one benchmark at a time)."""
    return DEVICE_RESOURCE_PREFIX + device


def require_distributed() -> Any:
    """The `distributed` package, or a MissingExtraError naming the `fleet` extra."""
    return require("distributed", "fleet", "fleet runs (harness fleet, harness run --fleet)")


class FleetJobError(Exception):
    """A task's job failed on its board (bad input there, or the engine failed); the message says why."""

    def __init__(self, device: str, message: str, usage: bool = False) -> None:
        super().__init__(device, message, usage)
        self.device = device
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"device {self.device}: {self.message}"
