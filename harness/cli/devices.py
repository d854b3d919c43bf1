"""`harness devices list|show|detect|probe`: the device profiles and this host."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from harness.cli.console import labelled, terminal


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devices", help="device profiles: list, show, detect this host",
                       description="Device profiles (devices/*.toml: threads, GPU layers, batch and context sizes, "
                                   "onnxruntime providers, memory budget, peak memory bandwidth): list them, show one, "
                                   "detect this host and name the closest profile, or probe its memory bandwidth and "
                                   "write a profile. See `harness devices ACTION --help`.")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    dsub.add_parser("list", help="list device profiles").set_defaults(func=list_command)
    s = dsub.add_parser("show", help="show one profile")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show_command)
    d = dsub.add_parser("detect", help="read this host and name the closest profile")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=detect_command)
    pr = dsub.add_parser("probe", help="measure this host's memory bandwidth (roofline) and CPU flags; "
                                       "optionally write a device profile")
    pr.add_argument("--threads", type=int, default=0, metavar="N", help="threads (default: physical cores)")
    pr.add_argument("--size-mb", type=int, default=128, metavar="MB", help="array size per thread (default 128 MiB)")
    pr.add_argument("--repeats", type=int, default=5, metavar="N", help="best of N runs per kernel (default 5)")
    pr.add_argument("--write", metavar="NAME", help="write a profile NAME.toml with the measured bandwidth")
    pr.add_argument("--catalog", dest="probe_catalog", metavar="DIR",
                    help="user catalog folder for --write (the profile goes to DIR/devices/NAME.toml; default: "
                         "the first --catalog given to harness, or HARNESS_CATALOG)")
    pr.add_argument("--out", metavar="FILE", help="write the profile to this .toml file instead")
    pr.add_argument("--force", action="store_true", help="overwrite an existing profile file")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=probe_command)


def list_command(args: argparse.Namespace) -> int:
    from harness import api

    table = Table(title="device profiles")
    for col in ("name", "kind", "threads", "GPU layers", "ONNX providers", "memory budget", "peak BW GB/s", "description"):
        table.add_column(col)
    for p in api.list_devices():
        table.add_row(p.name, p.kind, str(p.threads or "auto"), str(p.n_gpu_layers), ", ".join(p.onnx_providers),
                      f"{p.memory_budget_bytes / 1e9:.1f} GB", str(p.peak_bandwidth_gbps or "-"), p.description)
    terminal().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness import api

    p = api.show_device(args.name)
    if args.json:
        print(json.dumps(p.as_dict(), indent=2))
    else:
        c = terminal()
        for k, v in p.as_dict().items():
            c.print(labelled(k, v))
    return 0


def detect_command(args: argparse.Namespace) -> int:
    from harness import api

    found = api.detect_device()
    host, profile, why = found.host, found.profile, found.why
    if args.json:
        print(json.dumps({"host": host.as_dict(), "profile": profile.name, "why": why}, indent=2))
        return 0
    c = terminal()
    c.print(labelled("CPU", f"{host.cpu_model} ({host.physical_cores} physical / {host.logical_cores} logical cores)"))
    c.print(labelled("RAM", f"{host.ram_bytes / 2**30:.1f} GiB", "machine", f"{host.machine} {host.system}"))
    c.print(labelled("NVIDIA GPUs", ', '.join(g['name'] for g in host.gpus) or 'none (NVML not available or no GPU)'))
    c.print(labelled("Jetson", host.jetson_release or 'no', "board", host.board_model or '-'))
    c.print(labelled("closest profile", f"{profile.name} ({why})"))
    return 0


def probe_command(args: argparse.Namespace) -> int:
    from harness import api

    probe = api.probe_device(threads=args.threads, size_mb=args.size_mb, repeats=args.repeats, write=args.write,
                             catalog=args.probe_catalog, out=args.out, force=args.force)
    host, measured, target = probe.host, probe.bandwidth, probe.profile
    if args.json:
        print(json.dumps({"host": host, "cpu_flags": probe.cpu_flags, "bandwidth": measured,
                          "profile": str(target) if target else None}, indent=2))
        return 0
    c = terminal()
    c.print(labelled("CPU", f"{host['cpu_model']} ({host['physical_cores']} physical cores)"))
    c.print(labelled("kernel-relevant CPU flags", ' '.join(probe.flags_of_interest) or '-'))
    c.print(labelled("memory bandwidth", f"{probe.threads} thread(s), {args.size_mb} MiB arrays per thread, "
                                         f"best of {args.repeats}"))
    table = Table()
    table.add_column("kernel")
    table.add_column("GB/s", justify="right")
    for k, v in measured["gbps"].items():
        table.add_row(k, f"{v:.1f}")
    c.print(table)
    c.print(labelled("achievable bandwidth (roofline bound)", f"{measured['achievable_gbps']:.1f} GB/s"))
    if target is not None:
        c.print(f"wrote device profile {target} (use it with --device {target})")
    return 0
