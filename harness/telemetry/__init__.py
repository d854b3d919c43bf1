"""Device telemetry beside each sample: VRAM, energy. Each source sits behind one small interface.

`open_sources(device)` returns the sources that can run on this host and, for
every source that cannot, the reason; the run records those reasons in its
metadata and the readings they would have given as null (never 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.telemetry.base import TelemetryReading, TelemetrySource, merge_readings

if TYPE_CHECKING:
    from harness.devices import DeviceProfile

# Source factories, tried in order: "module:class". Each class has
# `probe(device) -> str | None` (None if usable, else the reason) and is a TelemetrySource.
# Whole-board sources first: merge_readings takes energy from the first source that measured it.
SOURCES: list[str] = [
    "harness.telemetry.tegrastats:TegrastatsSource",
    "harness.telemetry.nvml:NvmlSource",
    "harness.telemetry.rapl:RaplSource",
]


def open_sources(device: DeviceProfile) -> tuple[list[TelemetrySource], dict[str, str]]:
    import importlib

    usable: list[TelemetrySource] = []
    missing: dict[str, str] = {}
    for entry in SOURCES:
        module_name, _, cls_name = entry.partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        reason = cls.probe(device)
        if reason is None:
            usable.append(cls(device))
        else:
            missing[cls.name] = reason
    return usable, missing


__all__ = ["TelemetryReading", "TelemetrySource", "merge_readings", "open_sources", "SOURCES"]
