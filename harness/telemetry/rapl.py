"""CPU package energy from Intel/AMD RAPL through the Linux powercap sysfs files.

Each package zone `/sys/class/powercap/intel-rapl:N/` (AMD Zen uses the same
driver name) has `name` ("package-N"), `energy_uj` (a counter in microjoules)
and `max_energy_range_uj` (where the counter wraps). The energy of a sample is
the sum over packages of the counter's increase. Since Linux 5.10 energy_uj is
readable by root only; an unreadable or absent counter is recorded as the
reason this source is missing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.telemetry.base import TelemetryReading, TelemetrySource
from harness.telemetry.energy import counter_delta

if TYPE_CHECKING:
    from harness.devices import DeviceProfile


def package_zones(root: Path) -> list[Path]:
    """Top-level RAPL package zones under a powercap root (not their core/uncore/dram sub-zones)."""
    if not root.is_dir():
        return []
    zones = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            name = ""
        if name.startswith("package") or not name:
            zones.append(d)
    return zones


def read_counter_uj(zone: Path) -> int:
    return int((zone / "energy_uj").read_text().strip())


def read_max_range_uj(zone: Path) -> int | None:
    try:
        return int((zone / "max_energy_range_uj").read_text().strip())
    except (OSError, ValueError):
        return None


class RaplSource(TelemetrySource):
    name = "rapl"
    ROOT = Path("/sys/class/powercap")

    @classmethod
    def probe(cls, device: DeviceProfile) -> str | None:
        zones = package_zones(cls.ROOT)
        if not zones:
            return f"no RAPL package zones under {cls.ROOT} (not an Intel/AMD host, or powercap is not exposed here)"
        try:
            for z in zones:
                read_counter_uj(z)
        except PermissionError:
            return (f"{zones[0] / 'energy_uj'} is not readable (root only since Linux 5.10): "
                    "run as root to measure CPU energy")
        except (OSError, ValueError) as exc:
            return f"cannot read {zones[0] / 'energy_uj'} ({exc})"
        return None

    def __init__(self, device: DeviceProfile) -> None:
        super().__init__(device)
        self.zones = package_zones(self.ROOT)
        self.max_range_uj = {z: read_max_range_uj(z) for z in self.zones}
        self._start: dict[Path, int] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {z: read_counter_uj(z) for z in self.zones}

    def stop(self) -> TelemetryReading:
        end = {z: read_counter_uj(z) for z in self.zones}
        dt = time.perf_counter() - self._t0
        try:
            uj = sum(counter_delta(self._start[z], end[z], self.max_range_uj[z]) for z in self.zones)
        except ValueError:
            return TelemetryReading(self.name)
        energy_j = uj / 1e6
        return TelemetryReading(self.name, energy_j=energy_j, mean_power_w=energy_j / dt if dt > 0 else None)
