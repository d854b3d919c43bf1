"""What a measurement depends on besides the model: power mode, thermal state, CPU frequency policy.

Each reader returns a value, or None plus nothing else when the host does not
expose it (e.g. a VM without thermal zones); `host_state()` gathers them for
the run's metadata together with the reason for anything missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.devices import DeviceProfile

_NVP_MODE = re.compile(r"NV Power Mode:\s*(\S+)")


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """`nvpmodel -q` output ('NV Power Mode: MAXN\\n0') -> {'name': 'MAXN', 'id': 0}."""
    m = _NVP_MODE.search(text)
    if not m:
        return None
    rest = text[m.end():].split()
    mode_id = int(rest[0]) if rest and rest[0].isdigit() else None
    return {"name": m.group(1), "id": mode_id}


def jetson_power_mode(command: str = "nvpmodel") -> tuple[dict[str, Any] | None, str | None]:
    """The Jetson power mode from `nvpmodel -q`, or None and why not."""
    if shutil.which(command) is None:
        return None, "nvpmodel not found (not a Jetson)"
    try:
        out = subprocess.run([command, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvpmodel -q failed ({exc})"
    mode = parse_nvpmodel(out.stdout)
    return (mode, None) if mode else (None, f"nvpmodel -q printed no power mode (exit {out.returncode})")


def thermal_zones(root: Path = Path("/sys/class/thermal")) -> dict[str, float]:
    """Temperature of every readable thermal zone in degrees Celsius (sysfs gives millidegrees), by zone type."""
    out: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip() or zone.name
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        key = kind if kind not in out else f"{kind}:{zone.name}"
        out[key] = milli / 1000.0
    return out


def hottest_c(root: Path = Path("/sys/class/thermal")) -> float | None:
    """The temperature of the hottest readable thermal zone, in degrees Celsius; None without any."""
    temps = thermal_zones(root)
    return max(temps.values()) if temps else None


def cpufreq_governors(root: Path = Path("/sys/devices/system/cpu")) -> dict[str, int]:
    """How many CPUs run each cpufreq governor (e.g. {'performance': 4})."""
    counts: dict[str, int] = {}
    for f in sorted(root.glob("cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            g = f.read_text().strip()
        except OSError:
            continue
        counts[g] = counts.get(g, 0) + 1
    return counts


def clocks_pinned(root: Path = Path("/sys/devices/system/cpu")) -> bool | None:
    """Whether every CPU's frequency range is a single value (scaling_min_freq == scaling_max_freq, as
    `jetson_clocks` sets it); None without cpufreq."""
    seen = False
    for d in sorted(root.glob("cpu[0-9]*/cpufreq")):
        try:
            lo, hi = int((d / "scaling_min_freq").read_text()), int((d / "scaling_max_freq").read_text())
        except (OSError, ValueError):
            continue
        seen = True
        if lo != hi:
            return False
    return True if seen else None


def measurement_warnings(threads: int, allowed_cores: int, governors: dict[str, int] | None, jetson: bool,
                         power_mode: dict[str, Any] | None, power_mode_why: str | None,
                         pinned: bool | None) -> list[str]:
    """What makes this host's cost figures unrepeatable, said before a run (pure: the readings are given)."""
    out = []
    if threads > allowed_cores:
        out.append(f"the device profile runs {threads} threads but this process may use {allowed_cores} core(s) "
                   f"(os.sched_getaffinity): llama.cpp's spinning threads then fight each other and decode "
                   f"collapses; set threads = {allowed_cores} in the profile or widen the affinity")
    others = sorted(g for g in (governors or {}) if g != "performance")
    if others:
        out.append(f"CPU frequency governor is {', '.join(others)}, not performance: clocks follow the load and "
                   "figures vary between runs; for repeatable numbers run "
                   "`sudo cpupower frequency-set -g performance`")
    if jetson:
        if power_mode is None:
            out.append(f"Jetson power mode unknown ({power_mode_why or 'nvpmodel -q printed nothing'}): set one "
                       "with `sudo nvpmodel -m N` and record it")
        if pinned is False:
            mode = f" in {power_mode['name']}" if power_mode else ""
            out.append(f"Jetson clocks are not fixed{mode} (scaling_min_freq != scaling_max_freq): run "
                       "`sudo jetson_clocks` for repeatable figures")
    return out


def host_state() -> dict[str, Any]:
    """Power mode, temperatures and CPU governors where readable, with the reason for what is not."""
    unavailable: dict[str, str] = {}
    mode, why = jetson_power_mode()
    if why:
        unavailable["power_mode"] = why
    temps = thermal_zones()
    if not temps:
        unavailable["thermal"] = "no readable /sys/class/thermal/thermal_zone*/temp on this host"
    governors = cpufreq_governors()
    if not governors:
        unavailable["cpufreq_governor"] = "no /sys/devices/system/cpu/cpu*/cpufreq on this host"
    return {"power_mode": mode, "thermal_c": temps or None, "cpufreq_governors": governors or None,
            "unavailable": unavailable}


def host_warnings(device: DeviceProfile) -> list[str]:
    """measurement_warnings for this host and a device profile."""
    from harness.devices import jetson_release

    jetson = device.kind == "jetson" or jetson_release() is not None or shutil.which("nvpmodel") is not None
    mode, why = jetson_power_mode() if jetson else (None, None)
    return measurement_warnings(device.resolved_threads(), len(allowed_cpus()), cpufreq_governors() or None, jetson,
                                mode, why, clocks_pinned() if jetson else None)


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))
