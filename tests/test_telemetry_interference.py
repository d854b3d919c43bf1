"""What else used the machine during a sample: /proc parsing worked out by hand, the contention rule, the host
warnings, and the monitor on fake /proc files and on this host with a real competing process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.telemetry import host_state, interference
from harness.telemetry.interference import (
    CpuTimes,
    HostMonitor,
    contended,
    parse_cpuinfo_mhz,
    parse_proc_stat,
    parse_self_stat,
    parse_vcgencmd_throttled,
    pi_throttled,
)

PROC_STAT = """cpu  100 10 50 800 20 5 5 10 0 0
cpu0 60 5 30 400 10 3 2 4 0 0
cpu1 40 5 20 400 10 2 3 6 0 0
intr 1302789 0 0
ctxt 123
"""


def test_proc_stat_sums_the_cpus_asked_for() -> None:
    # cpu0: busy = user 60 + nice 5 + system 30 + irq 3 + softirq 2 = 100 ticks; idle 400 + iowait 10; steal 4
    assert parse_proc_stat(PROC_STAT, [0]) == CpuTimes(1.0, 4.1, 0.04)
    # both: busy 100 + (40 + 5 + 20 + 2 + 3) = 170; idle 410 + 410; steal 10
    assert parse_proc_stat(PROC_STAT, [0, 1]) == CpuTimes(1.7, 8.2, 0.1)
    # the aggregate line: 100 + 10 + 50 + 5 + 5 = 170 busy as well
    assert parse_proc_stat(PROC_STAT) == CpuTimes(1.7, 8.2, 0.1)
    assert parse_proc_stat(PROC_STAT, [0, 7]) is None  # a CPU that is not there
    assert parse_proc_stat("cpu0 1 2 x 4\n", [0]) is None


def test_self_stat_counts_fields_after_the_command_name() -> None:
    # fields 3..: state R, ppid 1, pgrp 2, session 3, tty 4, tpgid 5, flags 6, minflt 7, cminflt 8, majflt 9,
    # cmajflt 10, utime 250, stime 50, cutime 99, cstime 99 -> (250 + 50) / 100 s
    text = "1234 (my (odd) cmd) R 1 2 3 4 5 6 7 8 9 10 250 50 99 99 20 0 1 0"
    assert parse_self_stat(text) == pytest.approx(3.0)
    assert parse_self_stat("1234 (x) R 1 2") is None
    assert parse_self_stat(Path("/proc/self/stat").read_text()) is not None


def test_interference_is_others_busy_time_over_capacity() -> None:
    before, after = CpuTimes(10.0, 90.0, 0.0), CpuTimes(11.5, 90.4, 0.1)
    # window: 1.5 busy + 0.4 idle + 0.1 steal = 2.0 s of CPU capacity; this process used 1.2 of the 1.5 busy
    frac, steal = interference.interference(before, after, own_before_s=5.0, own_after_s=6.2)
    assert frac == pytest.approx(0.3 / 2.0) and steal == pytest.approx(0.05)
    # own time above the sampled busy time (tick sampling) is clamped, never negative
    assert interference.interference(before, after, 5.0, 7.0)[0] == 0.0
    assert interference.interference(before, before, 5.0, 5.0) == (None, None)


def test_the_contention_rule() -> None:
    assert contended(0.06, 0.05, 0.10) is True  # others and the hypervisor together: 11% > 10%
    assert contended(0.10, None, 0.10) is False  # at the threshold is not over it
    assert contended(0.02, 0.0, 0.10) is False
    assert contended(None, 0.5, 0.10) is None  # the host does not say


def test_frequency_and_throttle_readings() -> None:
    text = "processor\t: 0\ncpu MHz\t\t: 2000.0\n\nprocessor\t: 1\ncpu MHz\t\t: 3000.0\n"
    assert parse_cpuinfo_mhz(text) == 2500.0 and parse_cpuinfo_mhz(text, [1]) == 3000.0
    assert parse_cpuinfo_mhz("processor : 0\n") is None
    assert parse_vcgencmd_throttled("throttled=0x50005\n") == 0x50005
    assert parse_vcgencmd_throttled("error") is None
    assert not pi_throttled(0x0, 0x0)
    assert pi_throttled(0x0, 0x4)  # throttled now
    assert pi_throttled(0x0, 0x40000)  # "throttling has occurred" appeared during the sample
    assert not pi_throttled(0x40000, 0x40000)  # it happened before the sample


def test_host_warnings() -> None:
    w = host_state.measurement_warnings(4, 2, {"performance": 2}, False, None, None, None)
    assert len(w) == 1 and "runs 4 threads but this process may use 2 core(s)" in w[0]
    assert "os.sched_getaffinity" in w[0]
    w = host_state.measurement_warnings(2, 2, {"powersave": 1, "performance": 1}, False, None, None, None)
    assert len(w) == 1 and "governor is powersave, not performance" in w[0]
    w = host_state.measurement_warnings(2, 2, None, True, {"name": "15W", "id": 1}, None, False)
    assert w == ["Jetson clocks are not fixed in 15W (scaling_min_freq != scaling_max_freq): run `sudo jetson_clocks` "
                 "for repeatable figures"]
    w = host_state.measurement_warnings(2, 2, None, True, None, "nvpmodel -q failed", True)
    assert len(w) == 1 and "Jetson power mode unknown (nvpmodel -q failed)" in w[0]
    assert host_state.measurement_warnings(2, 4, {"performance": 4}, True, {"name": "MAXN", "id": 0}, None,
                                           True) == []


def test_clocks_and_heat_from_sysfs(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    for i, (lo, hi) in enumerate([(1000, 1000), (800, 2000)]):
        d = cpu / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(str(lo))
        (d / "scaling_max_freq").write_text(str(hi))
    assert host_state.clocks_pinned(cpu) is False
    (cpu / "cpu1" / "cpufreq" / "scaling_min_freq").write_text("2000")
    (cpu / "cpu1" / "cpufreq" / "scaling_max_freq").write_text("2000")
    assert host_state.clocks_pinned(cpu) is True
    assert host_state.clocks_pinned(tmp_path / "none") is None
    thermal = tmp_path / "thermal"
    for i, milli in enumerate((41000, 67500)):
        z = thermal / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(f"zone{i}")
        (z / "temp").write_text(str(milli))
    assert host_state.hottest_c(thermal) == 67.5
    assert host_state.hottest_c(tmp_path / "none") is None


def test_monitor_on_fake_proc_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat, me = tmp_path / "stat", tmp_path / "self_stat"
    stat.write_text("cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0\ncpu1 100 0 0 900 0 0 0 0\n")
    me.write_text("1 (python) R 1 2 3 4 5 6 7 8 9 10 50 10 0 0 20 0")
    monkeypatch.setattr(interference, "_PROC_STAT", stat)
    monkeypatch.setattr(interference, "_SELF_STAT", me)
    monkeypatch.setattr(interference, "_CPU_ROOT", tmp_path / "no-cpu")
    monkeypatch.setattr(interference, "_CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(host_state, "thermal_zones", lambda root=None: {})
    mon = HostMonitor(cpus=[0, 1])
    assert mon.sources()["cpu_times"] == "procfs" and mon.mhz_source is None and mon.throttle_source is None
    mon.start()
    # over the sample: cpu0 +150 busy +50 idle, cpu1 +60 busy +140 idle -> 400 ticks of capacity, 210 busy;
    # this process +120 + 30 = 150 ticks -> others 60 ticks = 15% of the machine
    stat.write_text("cpu  0 0 0 0 0 0 0 0\ncpu0 250 0 0 950 0 0 0 0\ncpu1 160 0 0 1040 0 0 0 0\n")
    me.write_text("1 (python) R 1 2 3 4 5 6 7 8 9 10 170 40 0 0 20 0")
    r = mon.stop()
    assert r.interference_frac == pytest.approx(0.15) and r.cpu_steal_frac == 0.0
    assert (r.cpu_mhz, r.temp_c, r.throttled) == (None, None, None)  # not exposed here: None, never 0
    assert contended(r.interference_frac, r.cpu_steal_frac, 0.10) is True


def busy_processes(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")
def test_monitor_sees_a_competing_process_on_this_host() -> None:
    mon = HostMonitor()
    assert mon.sources()["cpu_times"] == "procfs"
    procs = busy_processes(len(mon.cpus))
    try:
        time.sleep(0.3)  # let them start spinning
        mon.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            pass  # this process is busy too: its own time must not count as interference
        r = mon.stop()
    finally:
        stop(procs)
    # One spinning process per allowed CPU against this one: they take well over a third of the machine
    # (anything else running here only adds to it).
    assert r.interference_frac is not None and 0.3 < r.interference_frac <= 1.0
    assert r.window_s is not None and r.window_s >= 1.0
    assert contended(r.interference_frac, r.cpu_steal_frac, 0.10)


def test_wait_for_calm_gives_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([0.5, 0.4, 0.3, 0.02])

    class Fake(HostMonitor):
        def __init__(self) -> None:
            pass

        def start(self) -> None:
            pass

        def stop(self) -> interference.HostReading:
            return interference.HostReading(next(readings), 0.0, window_s=1.0)

    calm, waited, last = interference.wait_for_calm(Fake(), 0.1, timeout_s=2.0, sleep=lambda s: None)
    assert (calm, waited) == (False, 2.0) and last is not None and last.interference_frac == 0.4
    calm, waited, last = interference.wait_for_calm(Fake(), 0.1, timeout_s=10.0, sleep=lambda s: None)
    assert (calm, waited) == (True, 2.0) and last is not None and last.interference_frac == 0.02


def test_allowed_cpus_follow_the_affinity() -> None:
    assert interference.allowed_cpus() == sorted(os.sched_getaffinity(0))
