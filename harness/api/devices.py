"""Device profiles and this host: list, show, detect the closest profile, probe the memory bandwidth.

`harness devices` is these functions with arguments parsed and results printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.devices import DeviceProfile, HostInfo


@dataclass(frozen=True)
class Detection:
    host: HostInfo
    profile: DeviceProfile  # the closest profile
    why: str  # why that one


@dataclass(frozen=True)
class Probe:
    host: dict[str, Any]
    cpu_flags: list[str]
    flags_of_interest: list[str]  # the CPU flags llama.cpp's kernels use
    bandwidth: dict[str, Any]  # {"gbps": {kernel: GB/s}, "achievable_gbps": ...} (harness.roofline)
    threads: int
    profile: Path | None  # the profile written, if one was asked for


def list_devices() -> list[DeviceProfile]:
    """Every device profile of the catalogs (shipped and user)."""
    from harness.devices import list_profiles

    return list_profiles()


def show_device(name: str) -> DeviceProfile:
    """One profile, by name or .toml path."""
    from harness.devices import load_profile

    return load_profile(name)


def detect_device() -> Detection:
    """This host's facts and the profile closest to it."""
    from harness.devices import closest_profile, detect_host

    host = detect_host()
    profile, why = closest_profile(host)
    return Detection(host, profile, why)


def probe_device(*, threads: int = 0, size_mb: int = 128, repeats: int = 5, write: str | None = None,
                 catalog: str | Path | None = None, out: str | Path | None = None, force: bool = False) -> Probe:
    """Measure this host's memory bandwidth (the roofline bound of decoding) and CPU flags (`threads` 0: the physical
    cores). With `write` NAME a profile NAME.toml goes to the user catalog (`catalog`, else the first user catalog
    folder); with `out` to that file. The shipped catalog is never written; where it goes is checked before the
    measurement."""
    from harness.devices import cpu_flags, detect_host, load_profile, physical_cores
    from harness.roofline import cpu_flags_of_interest, measure_bandwidth, profile_toml

    if threads < 0 or repeats < 1 or size_mb < 1:
        raise UsageError("--threads must be >= 0, --repeats >= 1 and --size-mb >= 1")
    target = _profile_target(write, catalog, out, force)  # check before the slow measurement
    threads = threads or physical_cores()
    host = detect_host().as_dict()
    flags = cpu_flags()
    measured = measure_bandwidth(threads=threads, array_bytes=size_mb * 1024 * 1024, repeats=repeats)
    if target is not None:
        text = profile_toml(target.stem, measured, host, flags)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        load_profile(str(target))  # the written profile must load
    return Probe(host, flags, cpu_flags_of_interest(flags), measured, threads, target)


def _profile_target(write: str | None, user_catalog: str | Path | None, out: str | Path | None,
                    force: bool) -> Path | None:
    """Where `probe --write/--out` writes: never inside the shipped catalog."""
    from harness import catalog

    package = Path(__file__).resolve().parents[1]
    shipped_roots = {(package / "_catalog").resolve(), package.parent.resolve()}
    if out:
        target = Path(out).expanduser()
        if target.suffix != ".toml":
            raise UsageError(f"--out {out}: a device profile is a .toml file: give a path ending in .toml")
    elif write:
        if not all(c.isalnum() or c in "-_." for c in write):
            raise UsageError(f"--write {write!r}: use letters, digits, '-', '_' or '.' in a profile name")
        user_roots = [r for r in catalog.roots() if r.resolve() not in shipped_roots]
        root = Path(user_catalog) if user_catalog else (user_roots[0] if user_roots else None)
        if root is None:
            raise UsageError("--write needs a user catalog folder: add --catalog DIR (or --out FILE); "
                             "the shipped catalog is never written")
        target = root.expanduser() / "devices" / f"{write}.toml"
    else:
        return None
    if target.parent.resolve() in {(r / "devices") for r in shipped_roots}:
        raise UsageError(f"{target} is in the shipped catalog: "
                         "write to a user catalog with --catalog DIR or --out FILE")
    if target.exists() and not force:
        raise UsageError(f"{target} exists: pass --force to overwrite it, or choose another name")
    return target
