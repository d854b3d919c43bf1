"""tegrastats lines of Orin Nano, AGX Orin, Nano and TX2 boards; the source against a stand-in tegrastats."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from harness.devices import load_profile
from harness.telemetry.host_state import parse_nvpmodel
from harness.telemetry.tegrastats import TegrastatsSource, parse_line

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"
MIB = 1024 * 1024


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_orin_nano_idle_and_loaded() -> None:
    idle, loaded = (parse_line(x) for x in lines("tegrastats_orin_nano.txt"))
    assert idle is not None and loaded is not None
    assert idle.ram_used_bytes == 2147 * MIB and idle.ram_total_bytes == 7620 * MIB
    assert idle.swap_used_bytes == 1476 * MIB
    assert idle.gpu_load_pct == 0.0 and idle.emc_load_pct is None
    assert idle.rails_mw == {"VDD_IN": (4556, 4556), "VDD_CPU_GPU_CV": (483, 483), "VDD_SOC": (1451, 1451)}
    assert idle.board_power_w == pytest.approx(4.556) and idle.power_rail == "VDD_IN"
    assert idle.temperatures_c["gpu"] == pytest.approx(48.625)
    assert loaded.gpu_load_pct == 87.0 and loaded.emc_load_pct == 31.0
    assert loaded.ram_used_bytes == 2448 * MIB
    # The current reading, not the running average, is the power at that instant.
    assert loaded.board_power_w == pytest.approx(9.872)


def test_agx_orin_has_no_input_rail_so_rails_are_summed() -> None:
    idle, loaded = (parse_line(x) for x in lines("tegrastats_agx_orin.txt"))
    assert idle is not None and loaded is not None
    assert set(idle.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert idle.board_power_w == pytest.approx((3188 + 1195 + 3229 + 302) / 1000)
    assert loaded.board_power_w == pytest.approx((11554 + 2789 + 4633 + 907) / 1000)
    assert loaded.gpu_load_pct == 64.0
    assert idle.ram_total_bytes == 30536 * MIB
    assert idle.power_rail == "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO"


def test_nano_rails_without_units_and_iram_ignored() -> None:
    idle, loaded = (parse_line(x) for x in lines("tegrastats_nano.txt"))
    assert idle is not None and loaded is not None
    assert idle.rails_mw == {"POM_5V_IN": (2505, 2505), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (396, 396)}
    assert "IRAM" not in idle.rails_mw and "RAM" not in idle.rails_mw
    assert idle.board_power_w == pytest.approx(2.505) and idle.power_rail == "POM_5V_IN"
    assert loaded.board_power_w == pytest.approx(6.912)
    assert loaded.gpu_load_pct == 99.0
    assert idle.temperatures_c["PMIC"] == 100.0


def test_tx2_input_rail_among_many() -> None:
    (tx2,) = (parse_line(x) for x in lines("tegrastats_tx2.txt"))
    assert tx2 is not None
    assert len(tx2.rails_mw) == 6
    assert tx2.board_power_w == pytest.approx(3.029)
    assert tx2.ram_used_bytes == 1838 * MIB


def test_lines_without_stats_are_ignored() -> None:
    assert parse_line("") is None
    assert parse_line("tegrastats: permission denied") is None


def test_nvpmodel_query_output() -> None:
    assert parse_nvpmodel((FIXTURES / "nvpmodel_q_orin.txt").read_text()) == {"name": "MAXN_SUPER", "id": 2}
    assert parse_nvpmodel((FIXTURES / "nvpmodel_q_nano.txt").read_text()) == {"name": "5W", "id": 1}
    assert parse_nvpmodel("command not found") is None


def _stand_in_tegrastats(tmp_path: Path, fixture_line: str) -> Path:
    """A `tegrastats` that prints one fixture line every --interval ms (the real tool cannot exist here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tegrastats"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "ms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
        f"line = {fixture_line!r}\n"
        "while True:\n"
        "    print(line, flush=True)\n"
        "    time.sleep(ms / 1000)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_source_integrates_board_power_over_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = lines("tegrastats_orin_nano.txt")[1]  # VDD_IN 9872 mW, constant
    monkeypatch.setenv("PATH", f"{_stand_in_tegrastats(tmp_path, line)}{os.pathsep}{os.environ['PATH']}")
    device = load_profile("jetson-orin-nano-8gb")
    assert TegrastatsSource.probe(device) is None
    src = TegrastatsSource(device, interval_ms=20)
    try:
        time.sleep(0.3)  # the tool is running before the sample starts, as during a run
        t0 = time.perf_counter()
        src.start()
        time.sleep(0.4)
        reading = src.stop()
        window_s = time.perf_counter() - t0
    finally:
        src.close()
    assert reading.source == "tegrastats"
    assert reading.mean_power_w == pytest.approx(9.872, rel=1e-6)
    assert reading.energy_j == pytest.approx(9.872 * 0.4, rel=0.25)
    assert reading.energy_j <= 9.872 * window_s + 1e-9
    assert src.window and all(s.gpu_load_pct == 87.0 for s in src.window)
    assert reading.temp_c == pytest.approx(55.031) and reading.cpu_mhz == 1510.0  # the sample's heat and clocks
    assert src._proc.poll() is not None  # closed


def test_probe_without_tegrastats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = TegrastatsSource.probe(load_profile("laptop-cpu"))
    assert reason is not None and "tegrastats" in reason and "not found" in reason


def test_clocks_and_hottest_sensor_per_line() -> None:
    # Orin Nano loaded: six cores at 1510 MHz; hottest of cpu 52.125, soc2 50.5, soc0 51.093, gpu 55.031, tj 55.031,
    # soc1 51.5 -> 55.031
    _, loaded = (parse_line(x) for x in lines("tegrastats_orin_nano.txt"))
    assert loaded is not None and loaded.cpu_mhz == [1510] * 6 and loaded.mean_cpu_mhz == 1510.0
    assert loaded.hottest_c == pytest.approx(55.031)
    # Nano: PMIC@100C is a fixed placeholder, not a temperature: the hottest is AO@31.5C when idle
    idle, _ = (parse_line(x) for x in lines("tegrastats_nano.txt"))
    assert idle is not None and idle.hottest_c == 31.5 and idle.mean_cpu_mhz == 102.0
    # TX2: two cores are off; the online ones are 345 MHz
    (tx2,) = (parse_line(x) for x in lines("tegrastats_tx2.txt"))
    assert tx2 is not None and tx2.cpu_mhz == [345, 345, 345, 345]
