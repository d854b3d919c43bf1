"""`harness fleet scheduler | worker | status`: the Dask scheduler, a board's worker, and who is connected."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.api import DEFAULT_FLEET_PORT as DEFAULT_PORT

    p = sub.add_parser("fleet", help="run plans on a fleet of boards (Dask): scheduler, workers, status",
                       description="A fleet is a Dask scheduler and one worker per board; `harness run --fleet "
                                   "ADDRESS --device NAME ...` then runs each device's share of a plan on its "
                                   "board and gathers the rows into one store. Needs the fleet extra "
                                   "(pip install 'harness[fleet]') on every machine.")
    fsub = p.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    s = fsub.add_parser("scheduler", help="start the fleet's scheduler (loopback unless --host)",
                        description="Start a Dask scheduler. It listens on 127.0.0.1 unless --host says otherwise; "
                                    "on a lab network pass --host 0.0.0.0 (or the lab interface's address) and "
                                    "configure TLS through Dask's settings (see README, 'Run on a fleet').")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.set_defaults(func=scheduler_command)

    w = fsub.add_parser("worker", help="serve this board to a fleet: one benchmark at a time on its device",
                        description="Start a Dask worker for this board. It advertises the resource device:NAME=1, "
                                    "so the scheduler gives it one task (one model variant of a plan) at a time, "
                                    "and reports this host's facts (`harness devices detect`). Each task runs "
                                    "the engine in a fresh process into this board's shard store.")
    w.add_argument("--scheduler", required=True, metavar="ADDRESS", help="the scheduler, e.g. tcp://10.0.0.5:8786")
    w.add_argument("--device", default="auto", help="device profile name or .toml path, or 'auto' (detect this board)")
    w.add_argument("--store", default=None, metavar="PATH",
                   help="this board's shard store (default results/shard-DEVICE.sqlite)")
    w.add_argument("--name", default=None, help="the worker's name (default HOSTNAME-DEVICE)")
    w.add_argument("--listen-host", default=None, metavar="IP",
                   help="address this worker listens on (default: the one that reaches the scheduler)")
    w.add_argument("--connect-timeout", type=float, default=60.0, metavar="S",
                   help="stop when the scheduler cannot be reached for this long (default 60 s)")
    w.set_defaults(func=worker_command)

    st = fsub.add_parser("status", help="list the boards connected to a scheduler, with their devices and hosts")
    st.add_argument("--scheduler", required=True, metavar="ADDRESS")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=status_command)


def scheduler_command(args: argparse.Namespace) -> int:
    from harness import api

    def ready(address: str) -> None:
        print(f"fleet scheduler at {address}: start a worker on each board with "
              f"`harness fleet worker --scheduler {address} --device NAME`", flush=True)

    try:
        api.serve_fleet_scheduler(args.host, args.port, on_ready=ready)
    except KeyboardInterrupt:
        print("fleet scheduler stopped", flush=True)
    return 0


def worker_command(args: argparse.Namespace) -> int:
    from harness import api

    worker = api.fleet_worker(args.device, args.store, args.name, args.catalog)
    config = worker.config

    def ready(address: str) -> None:
        print(f"fleet worker {config.name} at {address}: offers {worker.resource}=1 "
              f"({config.device_reason}) to {args.scheduler}; shard {config.store}", flush=True)

    try:
        api.serve_fleet_worker(args.scheduler, worker, listen_host=args.listen_host, on_ready=ready,
                               connect_timeout_s=args.connect_timeout)
    except KeyboardInterrupt:
        print(f"fleet worker {config.name} stopped", flush=True)
    return 0


def status_command(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text

    devices = api.fleet_status(args.scheduler)
    if args.json:
        print(json.dumps(devices, indent=2, sort_keys=True, default=str))
        return 0
    table = Table(title=text(f"fleet at {args.scheduler}: {sum(len(w) for w in devices.values())} worker(s)"))
    for col in ("device", "worker", "address", "cpu", "cores", "RAM", "pid"):
        table.add_column(col)
    for device, workers in sorted(devices.items()):
        for w in workers:
            host: dict[str, Any] = w.get("host") or {}
            ram = host.get("ram_bytes")
            table.add_row(*(text(str(v)) for v in (
                device, w.get("name"), w.get("address"), host.get("cpu_model", "-"), host.get("physical_cores", "-"),
                f"{ram / 1e9:.1f} GB" if isinstance(ram, (int, float)) else "-", w.get("pid", "-"))))
    terminal().print(table)
    return 0
