"""The telemetry source interface and its reading."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.devices import DeviceProfile


@dataclass
class TelemetryReading:
    """What one source measured over one sample; None = not measured by this source."""

    source: str
    peak_vram_bytes: int | None = None
    energy_j: float | None = None
    mean_power_w: float | None = None
    temp_c: float | None = None  # hottest sensor the source reads (tegrastats)
    cpu_mhz: float | None = None  # mean CPU clock over the sample (tegrastats)


class TelemetrySource(ABC):
    name: str = ""

    def __init__(self, device: DeviceProfile) -> None:
        self.device = device

    @classmethod
    @abstractmethod
    def probe(cls, device: DeviceProfile) -> str | None:
        """None if this source works on this host, else why not (recorded in the run's metadata)."""

    @abstractmethod
    def start(self) -> None:
        """Begin measuring one sample."""

    @abstractmethod
    def stop(self) -> TelemetryReading:
        """End measuring and return the reading."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles at the end of a run."""


def merge_readings(readings: list[TelemetryReading]) -> TelemetryReading:
    """Combine readings: the first source that measured a quantity wins (sources are in priority order)."""
    out = TelemetryReading(source="")
    names = []
    for r in readings:
        if out.peak_vram_bytes is None and r.peak_vram_bytes is not None:
            out.peak_vram_bytes = r.peak_vram_bytes
        if out.energy_j is None and r.energy_j is not None:
            out.energy_j = r.energy_j
            out.mean_power_w = r.mean_power_w
            names.append(r.source)
        if out.temp_c is None and r.temp_c is not None:
            out.temp_c = r.temp_c
        if out.cpu_mhz is None and r.cpu_mhz is not None:
            out.cpu_mhz = r.cpu_mhz
    out.source = "+".join(names)
    return out
