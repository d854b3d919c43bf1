"""`harness devices list|show|detect|probe`: the device profiles and this host."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    from harness.devices import list_profiles

    table = Table(title="device profiles")
    for col in ("name", "kind", "threads", "GPU layers", "ONNX providers", "memory budget", "peak BW GB/s", "description"):
        table.add_column(col)
    for p in list_profiles():
        table.add_row(p.name, p.kind, str(p.threads or "auto"), str(p.n_gpu_layers), ", ".join(p.onnx_providers),
                      f"{p.memory_budget_bytes / 1e9:.1f} GB", str(p.peak_bandwidth_gbps or "-"), p.description)
    terminal().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness.devices import load_profile

    p = load_profile(args.name)
    if args.json:
        print(json.dumps(p.as_dict(), indent=2))
    else:
        c = terminal()
        for k, v in p.as_dict().items():
            c.print(labelled(k, v))
    return 0


def detect_command(args: argparse.Namespace) -> int:
    from harness.devices import closest_profile, detect_host

    host = detect_host()
    profile, why = closest_profile(host)
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


def _profile_target(args: argparse.Namespace) -> Path | None:
    """Where `probe --write/--out` writes: never inside the shipped catalog."""
    from harness import catalog
    from harness.errors import UsageError

    package = Path(__file__).resolve().parents[1]
    shipped_roots = {(package / "_catalog").resolve(), package.parent.resolve()}
    if args.out:
        target = Path(args.out).expanduser()
        if target.suffix != ".toml":
            raise UsageError(f"--out {args.out}: a device profile is a .toml file: give a path ending in .toml")
    elif args.write:
        if not all(c.isalnum() or c in "-_." for c in args.write):
            raise UsageError(f"--write {args.write!r}: use letters, digits, '-', '_' or '.' in a profile name")
        user_roots = [r for r in catalog.roots() if r.resolve() not in shipped_roots]
        root = Path(args.probe_catalog) if args.probe_catalog else (user_roots[0] if user_roots else None)
        if root is None:
            raise UsageError("--write needs a user catalog folder: add --catalog DIR (or --out FILE); "
                             "the shipped catalog is never written")
        target = root.expanduser() / "devices" / f"{args.write}.toml"
    else:
        return None
    if target.parent.resolve() in {(r / "devices") for r in shipped_roots}:
        raise UsageError(f"{target} is in the shipped catalog: "
                         "write to a user catalog with --catalog DIR or --out FILE")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists: pass --force to overwrite it, or choose another name")
    return target


def probe_command(args: argparse.Namespace) -> int:
    from harness.devices import cpu_flags, detect_host, physical_cores
    from harness.errors import UsageError
    from harness.roofline import cpu_flags_of_interest, measure_bandwidth, profile_toml

    if args.threads < 0 or args.repeats < 1 or args.size_mb < 1:
        raise UsageError("--threads must be >= 0, --repeats >= 1 and --size-mb >= 1")
    target = _profile_target(args)  # check before the slow measurement
    threads = args.threads or physical_cores()
    host = detect_host().as_dict()
    flags = cpu_flags()
    measured = measure_bandwidth(threads=threads, array_bytes=args.size_mb * 1024 * 1024, repeats=args.repeats)
    text = None
    if target is not None:
        text = profile_toml(target.stem, measured, host, flags)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        from harness.devices import load_profile

        load_profile(str(target))  # the written profile must load
    if args.json:
        print(json.dumps({"host": host, "cpu_flags": flags, "bandwidth": measured,
                          "profile": str(target) if target else None}, indent=2))
        return 0
    c = terminal()
    c.print(labelled("CPU", f"{host['cpu_model']} ({host['physical_cores']} physical cores)"))
    c.print(labelled("kernel-relevant CPU flags", ' '.join(cpu_flags_of_interest(flags)) or '-'))
    c.print(labelled("memory bandwidth", f"{threads} thread(s), {args.size_mb} MiB arrays per thread, "
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
