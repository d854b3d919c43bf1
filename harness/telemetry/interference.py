"""What else used the machine during a sample: other processes' CPU time, steal, CPU frequency, heat, throttling.

llama.cpp's worker threads spin-wait at every barrier, so one other busy process on a small machine
makes decode several times slower (measured on 2 cores: 8.9 tok/s against 63-110 quiet). A cost figure
is only worth keeping when the record says the machine was quiet. `HostMonitor.start()` / `stop()`
bracket one sample and return a `HostReading`:

- interference_frac: CPU time of other processes over the sample as a share of the capacity of the
  CPUs this process may run on (`os.sched_getaffinity`): the busy time of those CPUs in /proc/stat
  (user, nice, system, irq, softirq; guest time is already inside user and nice) minus this process's
  own time (utime + stime of /proc/self/stat, all threads), over their total time. Elsewhere psutil
  gives the same counters. Clamped at 0: the kernel samples per-CPU time at each tick while a
  process's own time is exact, so on short windows the difference can dip below 0.
- cpu_steal_frac: time a hypervisor ran something else while these CPUs wanted to run, same capacity.
- cpu_mhz: mean current frequency of those CPUs at the start and the end of the sample (cpufreq's
  scaling_cur_freq, else /proc/cpuinfo's "cpu MHz", which on many VMs is the nominal clock).
- temp_c: the hottest thermal zone at the start or the end of the sample.
- throttled: whether the CPU was throttled during the sample: Linux thermal_throttle counters rose, or
  a Raspberry Pi's `vcgencmd get_throttled` reported under-voltage, capping or throttling.

Anything the host does not expose is None, never 0. `contended(reading, threshold)` is the one rule for
flagging a sample; `wait_for_calm` measures the machine while this process idles (the `wait` policy).

The counters are in clock ticks (USER_HZ, 100 a second): over a window of T seconds on N CPUs the
resolution is 1 / (100 T N) of the machine, and the tick sampling of busy time adds a few ticks of noise,
so a 0.5 s sample on 2 cores resolves about 1-3% of the machine. The default threshold (5% of the
machine, harness.devices.DEFAULT_CONTENTION_THRESHOLD, a device profile's `contention_threshold`) sits
above that noise floor and above what a quiet host's daemons take (at most 3.9% over 160 quiet samples
here, 2026-12-04), and low enough to catch a load that overlaps only part of a sample: because llama.cpp's
threads spin-wait, a full load over a tenth of a 0.4 s sample shows as 9% of the machine and cost 36% of
its decode speed (benchmarks/contention.py), which a 10% threshold let through. One busy process on 2
cores shows as about 30-50%.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.telemetry.host_state import allowed_cpus, hottest_c

PROBE_WINDOW_S = 0.5  # how long `wait_for_calm` watches the machine per look
# vcgencmd get_throttled bits: 0 under-voltage now, 1 ARM frequency capped now, 2 throttled now, 3 soft
# temperature limit now; 16-19 the same "has occurred since boot".
PI_NOW_BITS = 0xF
PI_SINCE_BOOT_BITS = 0xF0000

_PROC_STAT = Path("/proc/stat")
_SELF_STAT = Path("/proc/self/stat")
_CPUINFO = Path("/proc/cpuinfo")
_CPU_ROOT = Path("/sys/devices/system/cpu")


# -- pure parsers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuTimes:
    """Accumulated time of a set of CPUs, in seconds."""

    busy_s: float  # user + nice + system + irq + softirq (guest is inside user/nice)
    idle_s: float  # idle + iowait
    steal_s: float

    @property
    def total_s(self) -> float:
        return self.busy_s + self.idle_s + self.steal_s


def parse_proc_stat(text: str, cpus: Iterable[int] | None = None, ticks_per_s: float = 100.0) -> CpuTimes | None:
    """CPU times from /proc/stat: the sum over the `cpuN` lines of `cpus`, or the aggregate `cpu` line when
    `cpus` is None. None when a line is missing or malformed."""
    want = None if cpus is None else {f"cpu{c}" for c in cpus}
    busy = idle = steal = 0
    found = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu"):
            continue
        name = parts[0]
        if (want is None and name != "cpu") or (want is not None and name not in want):
            continue
        try:
            v = [int(x) for x in parts[1:]]
        except ValueError:
            return None
        if len(v) < 4:
            return None
        v += [0] * (8 - len(v))  # kernels before 2.6.11 lack steal
        user, nice, system, idle_t, iowait, irq, softirq, steal_t = v[:8]
        busy += user + nice + system + irq + softirq
        idle += idle_t + iowait
        steal += steal_t
        found += 1
    expected = 1 if want is None else len(want)
    if found != expected:
        return None
    return CpuTimes(busy / ticks_per_s, idle / ticks_per_s, steal / ticks_per_s)


def parse_self_stat(text: str, ticks_per_s: float = 100.0) -> float | None:
    """utime + stime (seconds) from /proc/<pid>/stat. The command name (field 2) may hold spaces and
    parentheses, so fields are counted after its last ')'."""
    end = text.rfind(")")
    if end < 0:
        return None
    rest = text[end + 1:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    try:
        return (int(rest[11]) + int(rest[12])) / ticks_per_s
    except (IndexError, ValueError):
        return None


def interference(before: CpuTimes, after: CpuTimes, own_before_s: float, own_after_s: float
                 ) -> tuple[float | None, float | None]:
    """(interference_frac, cpu_steal_frac) between two readings; (None, None) for an empty window."""
    total = after.total_s - before.total_s
    if total <= 0:
        return None, None
    other = (after.busy_s - before.busy_s) - (own_after_s - own_before_s)
    steal = after.steal_s - before.steal_s
    return max(0.0, other) / total, max(0.0, steal) / total


def parse_cpuinfo_mhz(text: str, cpus: Iterable[int] | None = None) -> float | None:
    """Mean of the "cpu MHz" lines of /proc/cpuinfo (of the given processors); None without any."""
    want = None if cpus is None else set(cpus)
    values: list[float] = []
    proc: int | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor":
            try:
                proc = int(value.strip())
            except ValueError:
                proc = None
        elif key == "cpu mhz" and (want is None or proc in want):
            try:
                values.append(float(value.strip()))
            except ValueError:
                continue
    return sum(values) / len(values) if values else None


def parse_vcgencmd_throttled(text: str) -> int | None:
    """`vcgencmd get_throttled` output ('throttled=0x50005') -> its bit field; None if unreadable."""
    _, sep, value = text.strip().partition("=")
    if not sep:
        return None
    try:
        return int(value.strip(), 16)
    except ValueError:
        return None


def pi_throttled(before: int, after: int) -> bool:
    """Whether a Raspberry Pi was throttled (or under-volted, or capped) between two get_throttled readings:
    a 'now' bit set at either end, or a 'since boot' bit that newly appeared."""
    return bool((before | after) & PI_NOW_BITS or (after & ~before) & PI_SINCE_BOOT_BITS)


# -- the reading and the rule ------------------------------------------------------------------------
@dataclass(frozen=True)
class HostReading:
    """What else happened on the host over one sample; None = not exposed by this host."""

    interference_frac: float | None = None
    cpu_steal_frac: float | None = None
    cpu_mhz: float | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    window_s: float | None = None


def contended(interference_frac: float | None, cpu_steal_frac: float | None, threshold: float) -> bool | None:
    """The one rule: a sample is contended when other processes and the hypervisor together took more than
    `threshold` of the machine's capacity; None when the host does not say."""
    if interference_frac is None:
        return None
    return interference_frac + (cpu_steal_frac or 0.0) > threshold


# -- readers -----------------------------------------------------------------------------------------
def _ticks_per_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


class HostMonitor:
    """Reads the host before and after a sample. Which readers work is found once, when it is made."""

    def __init__(self, cpus: Iterable[int] | None = None) -> None:
        self.cpus = list(cpus) if cpus is not None else allowed_cpus()
        self.hz = _ticks_per_s()
        self.cpu_source = self._probe_cpu_source()
        self.freq_files = [f for c in self.cpus if (f := _CPU_ROOT / f"cpu{c}" / "cpufreq" / "scaling_cur_freq").is_file()]
        self.mhz_source = "cpufreq" if self.freq_files else ("cpuinfo" if self._cpuinfo_mhz() is not None else None)
        self.throttle_files = [f for c in self.cpus for name in ("core_throttle_count", "package_throttle_count")
                               if (f := _CPU_ROOT / f"cpu{c}" / "thermal_throttle" / name).is_file()]
        self.vcgencmd = shutil.which("vcgencmd")
        self.throttle_source = ("thermal_throttle" if self.throttle_files else
                                "vcgencmd" if self.vcgencmd and self._pi_bits() is not None else None)
        self._start: tuple[float, CpuTimes | None, float | None, float | None, float | None, int | None,
                           int | None] | None = None

    # what a run records about the readers
    def sources(self) -> dict[str, str | None]:
        return {"cpu_times": self.cpu_source, "cpu_mhz": self.mhz_source, "throttle": self.throttle_source,
                "cpus": ",".join(map(str, self.cpus))}

    def _probe_cpu_source(self) -> str | None:
        try:
            if parse_proc_stat(_PROC_STAT.read_text(), self.cpus, self.hz) is not None and \
                    parse_self_stat(_SELF_STAT.read_text(), self.hz) is not None:
                return "procfs"
        except OSError:
            pass
        try:
            import psutil

            psutil.cpu_times(percpu=True)
            psutil.Process().cpu_times()
            return "psutil"
        except Exception:  # noqa: BLE001 - any failure: the host does not expose CPU times
            return None

    def _cpu_times(self) -> tuple[CpuTimes | None, float | None]:
        if self.cpu_source == "procfs":
            try:
                return (parse_proc_stat(_PROC_STAT.read_text(), self.cpus, self.hz),
                        parse_self_stat(_SELF_STAT.read_text(), self.hz))
            except OSError:
                return None, None
        if self.cpu_source == "psutil":
            import psutil

            per = psutil.cpu_times(percpu=True)
            chosen = [per[c] for c in self.cpus if c < len(per)]
            busy = sum(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                       + getattr(t, "softirq", 0.0) for t in chosen)
            idle = sum(t.idle + getattr(t, "iowait", 0.0) for t in chosen)
            steal = sum(getattr(t, "steal", 0.0) for t in chosen)
            own = psutil.Process().cpu_times()
            return CpuTimes(busy, idle, steal), own.user + own.system
        return None, None

    def _cpuinfo_mhz(self) -> float | None:
        try:
            return parse_cpuinfo_mhz(_CPUINFO.read_text(errors="replace"), self.cpus)
        except OSError:
            return None

    def _mhz(self) -> float | None:
        if self.mhz_source == "cpufreq":
            vals = []
            for f in self.freq_files:
                try:
                    vals.append(int(f.read_text().strip()) / 1000.0)  # kHz
                except (OSError, ValueError):
                    continue
            return sum(vals) / len(vals) if vals else None
        if self.mhz_source == "cpuinfo":
            return self._cpuinfo_mhz()
        return None

    def _throttle_count(self) -> int | None:
        total = 0
        for f in self.throttle_files:
            try:
                total += int(f.read_text().strip())
            except (OSError, ValueError):
                return None
        return total

    def _pi_bits(self) -> int | None:
        if not self.vcgencmd:
            return None
        try:
            out = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_vcgencmd_throttled(out.stdout)

    def _throttle_state(self) -> int | None:
        if self.throttle_source == "thermal_throttle":
            return self._throttle_count()
        if self.throttle_source == "vcgencmd":
            return self._pi_bits()
        return None

    def start(self) -> None:
        """Read the host just before a sample."""
        mhz, temp, throttle = self._mhz(), hottest_c(), self._throttle_state()
        times, own = self._cpu_times()
        self._start = (time.perf_counter(), times, own, mhz, temp, throttle, None)

    def stop(self) -> HostReading:
        """Read the host just after the sample and return what happened in between."""
        times, own = self._cpu_times()
        t1 = time.perf_counter()
        assert self._start is not None, "start() first"
        t0, times0, own0, mhz0, temp0, throttle0, _ = self._start
        self._start = None
        frac = steal = None
        if times is not None and times0 is not None and own is not None and own0 is not None:
            frac, steal = interference(times0, times, own0, own)
        mhz1, temp1, throttle1 = self._mhz(), hottest_c(), self._throttle_state()
        mhz_vals = [v for v in (mhz0, mhz1) if v is not None]
        temps = [v for v in (temp0, temp1) if v is not None]
        throttled: bool | None = None
        if throttle0 is not None and throttle1 is not None:
            throttled = (pi_throttled(throttle0, throttle1) if self.throttle_source == "vcgencmd"
                         else throttle1 > throttle0)
        return HostReading(frac, steal, sum(mhz_vals) / len(mhz_vals) if mhz_vals else None,
                           max(temps) if temps else None, throttled, t1 - t0)


def wait_for_calm(monitor: HostMonitor, threshold: float, timeout_s: float, window_s: float = PROBE_WINDOW_S,
                  sleep: Callable[[float], None] = time.sleep) -> tuple[bool, float, HostReading | None]:
    """Watch the machine in windows of `window_s` while this process idles, until other processes take at most
    `threshold` of it or `timeout_s` passes: (calm, seconds waited, last reading). A host that does not expose
    CPU times counts as calm (nothing can be told)."""
    waited = 0.0
    last: HostReading | None = None
    while True:
        monitor.start()
        sleep(window_s)
        last = monitor.stop()
        waited += last.window_s or window_s
        flag = contended(last.interference_frac, last.cpu_steal_frac, threshold)
        if not flag:
            return True, waited, last
        if waited >= timeout_s:
            return False, waited, last
