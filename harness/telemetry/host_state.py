"""What a measurement depends on besides the model: power mode, thermal state, CPU frequency policy.

Each reader returns a value, or None plus nothing else when the host does not
expose it (e.g. a VM without thermal zones); `host_state()` gathers them for
the run's metadata together with the reason for anything missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
