"""`harness devices list|show|detect`: the device profiles and this host."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devices", help="device profiles: list, show, detect this host")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    dsub.add_parser("list", help="list device profiles").set_defaults(func=list_command)
    s = dsub.add_parser("show", help="show one profile")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show_command)
    d = dsub.add_parser("detect", help="read this host and name the closest profile")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=detect_command)


def list_command(args: argparse.Namespace) -> int:
    from harness.devices import list_profiles

    table = Table(title="device profiles")
    for col in ("name", "kind", "threads", "GPU layers", "ONNX providers", "memory budget", "peak BW GB/s", "description"):
        table.add_column(col)
    for p in list_profiles():
        table.add_row(p.name, p.kind, str(p.threads or "auto"), str(p.n_gpu_layers), ", ".join(p.onnx_providers),
                      f"{p.memory_budget_bytes / 1e9:.1f} GB", str(p.peak_bandwidth_gbps or "-"), p.description)
    Console().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness.devices import load_profile

    p = load_profile(args.name)
    if args.json:
        print(json.dumps(p.as_dict(), indent=2))
    else:
        c = Console()
        for k, v in p.as_dict().items():
            c.print(f"[bold]{k}[/]: {v}")
    return 0


def detect_command(args: argparse.Namespace) -> int:
    from harness.devices import closest_profile, detect_host

    host = detect_host()
    profile, why = closest_profile(host)
    if args.json:
        print(json.dumps({"host": host.as_dict(), "profile": profile.name, "why": why}, indent=2))
        return 0
    c = Console()
    c.print(f"[bold]CPU[/]: {host.cpu_model} ({host.physical_cores} physical / {host.logical_cores} logical cores)")
    c.print(f"[bold]RAM[/]: {host.ram_bytes / 2**30:.1f} GiB   [bold]machine[/]: {host.machine} {host.system}")
    c.print(f"[bold]NVIDIA GPUs[/]: {', '.join(g['name'] for g in host.gpus) or 'none (NVML not available or no GPU)'}")
    c.print(f"[bold]Jetson[/]: {host.jetson_release or 'no'}   [bold]board[/]: {host.board_model or '-'}")
    c.print(f"[bold]closest profile[/]: {profile.name} ({why})")
    return 0
