"""RAPL through a powercap tree laid out like sysfs; the telemetry sources as a run records them here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from storehelp import table_rows

from harness.devices import load_profile
from harness.store import Store
from harness.telemetry import SOURCES, open_sources
from harness.telemetry.host_state import cpufreq_governors, host_state, thermal_zones
from harness.telemetry.rapl import RaplSource, package_zones

MAX_RANGE = 262_143_328_850


def zone(root: Path, name: str, kind: str, energy_uj: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(kind + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{MAX_RANGE}\n")
    return d


def test_package_energy_sums_packages_and_handles_wraparound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg0 = zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 900_000)  # a sub-zone: part of package-0, not added again
    pkg1 = zone(tmp_path, "intel-rapl:1", "package-1", MAX_RANGE - 250_000)
    zone(tmp_path, "intel-rapl-mmio:0", "package-0", 5)  # the MMIO mirror of package-0
    monkeypatch.setattr(RaplSource, "ROOT", tmp_path)
    assert package_zones(tmp_path) == [pkg0, pkg1]
    device = load_profile("server-cpu")
    assert RaplSource.probe(device) is None
    src = RaplSource(device)
    src.start()
    (pkg0 / "energy_uj").write_text("4500000\n")  # +3.5 J
    (pkg1 / "energy_uj").write_text("1250000\n")  # wrapped: +0.25 J +1.25 J = +1.5 J
    reading = src.stop()
    assert reading.source == "rapl"
    assert reading.energy_j == pytest.approx(5.0)
    assert reading.mean_power_w is not None and reading.mean_power_w > 0
    assert reading.peak_vram_bytes is None


def test_probe_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = load_profile("laptop-cpu")
    monkeypatch.setattr(RaplSource, "ROOT", tmp_path / "absent")
    assert "no RAPL package zones" in (RaplSource.probe(device) or "")
    d = tmp_path / "intel-rapl:0"
    d.mkdir()
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").mkdir()  # unreadable as a file
    monkeypatch.setattr(RaplSource, "ROOT", tmp_path)
    assert "cannot read" in (RaplSource.probe(device) or "")


def test_sources_registered_and_missing_ones_explained_on_this_host() -> None:
    assert SOURCES == ["harness.telemetry.tegrastats:TegrastatsSource", "harness.telemetry.nvml:NvmlSource",
                       "harness.telemetry.rapl:RaplSource"]
    usable, missing = open_sources(load_profile("laptop-cpu"))
    # This VM has no tegrastats, no NVIDIA driver and no powercap tree: each reason is recorded.
    if Path("/sys/class/powercap/intel-rapl:0/energy_uj").exists():
        pytest.skip("this host exposes RAPL")
    assert usable == []
    assert set(missing) == {"tegrastats", "nvml", "rapl"}
    assert all(isinstance(v, str) and len(v) > 10 for v in missing.values())


def test_host_state_readers(tmp_path: Path) -> None:
    for i, (kind, milli) in enumerate([("cpu-thermal", 47250), ("gpu-thermal", 51000), ("cpu-thermal", 46000)]):
        z = tmp_path / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(f"{milli}\n")
    assert thermal_zones(tmp_path / "thermal") == {"cpu-thermal": 47.25, "gpu-thermal": 51.0,
                                                   "cpu-thermal:thermal_zone2": 46.0}
    for i, g in enumerate(["performance", "schedutil", "performance"]):
        f = tmp_path / "cpu" / f"cpu{i}" / "cpufreq" / "scaling_governor"
        f.parent.mkdir(parents=True)
        f.write_text(g + "\n")
    assert cpufreq_governors(tmp_path / "cpu") == {"performance": 2, "schedutil": 1}
    state = host_state()
    assert set(state) == {"power_mode", "thermal_c", "cpufreq_governors", "unavailable"}
    if state["power_mode"] is None:
        assert "nvpmodel" in state["unavailable"]["power_mode"]


def test_a_run_records_missing_telemetry_as_null_with_reasons(small_run_store: Path) -> None:
    store = Store.open(small_run_store, create=False)
    try:
        run = table_rows(store, "runs")[0]
        rows = table_rows(store, "generations")
    finally:
        store.close()
    meta = run["metadata"]
    missing = meta["telemetry_unavailable"]
    assert {"tegrastats", "nvml", "rapl"} <= set(missing) or Path("/sys/class/powercap/intel-rapl:0").exists()
    assert "host_state" in meta and "unavailable" in meta["host_state"]
    assert "cpu_flags" in meta["host"] and meta["host"]["cpu_flags"]
    json.dumps(meta)  # stored metadata is plain JSON
    for r in rows:
        assert r["energy_j"] is None and r["peak_vram_bytes"] is None  # null, never 0
