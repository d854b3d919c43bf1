"""Jetson telemetry from `tegrastats`: RAM, GPU load, temperatures and power rails -> energy per sample.

Line formats parsed (one line per interval; newer releases prefix a timestamp):
- Orin Nano / Orin NX (L4T 35/36): `RAM 2147/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [0%@729,...]
  GR3D_FREQ 0% cpu@47.687C ... VDD_IN 4556mW/4556mW VDD_CPU_GPU_CV 483mW/483mW VDD_SOC 1451mW/1451mW`
- AGX Orin: `... GR3D_FREQ 0%@[0,0] ... VDD_GPU_SOC 3188mW/3188mW VDD_CPU_CV 1195mW/1195mW VIN_SYS_5V0 3229mW/3229mW
  VDDQ_VDD2_1V8AO 302mW/302mW`
- Nano / TX1 / TX2 (L4T 32): rails in mW without a unit, `POM_5V_IN 2505/2505 POM_5V_GPU 0/0 POM_5V_CPU 396/396`
  (Nano) or `VDD_IN 3029/3029 VDD_SYS_CPU 152/152 ...` (TX2).
Each rail is `NAME current/average`. Board power is the input rail (VDD_IN, else POM_5V_IN) when the board
has one; AGX Orin has none, so there it is the sum of its rails.

`tegrastats --interval MS` runs as a child process for the whole run; each sample's energy is the
trapezoidal integral of board power over the sample's time window.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.telemetry.base import TelemetryReading, TelemetrySource
from harness.telemetry.energy import window_energy_j

if TYPE_CHECKING:
    from harness.devices import DeviceProfile

MIB = 1024 * 1024
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
INTERVAL_MS = 100

_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_CPUS = re.compile(r"\bCPU \[([^\]]*)\]")
_CPU_CORE = re.compile(r"(\d+)%@(\d+)")
# Sensors that are not temperatures of the silicon: PMIC@100C (or 50C) is a fixed placeholder on many boards.
NOT_A_TEMPERATURE = ("PMIC",)


@dataclass
class TegraStats:
    """One tegrastats line. Power in milliwatts as printed; None where the line does not say."""

    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    gpu_load_pct: float | None = None
    emc_load_pct: float | None = None
    temperatures_c: dict[str, float] = field(default_factory=dict)
    cpu_mhz: list[int] = field(default_factory=list)  # clock of every online core ("off" cores left out)
    rails_mw: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (current, average)

    @property
    def board_power_w(self) -> float | None:
        """Input power: the input rail when present, else the sum of all rails; None without rails."""
        for name in INPUT_RAILS:
            if name in self.rails_mw:
                return self.rails_mw[name][0] / 1000.0
        if not self.rails_mw:
            return None
        return sum(cur for cur, _ in self.rails_mw.values()) / 1000.0

    @property
    def hottest_c(self) -> float | None:
        temps = [v for k, v in self.temperatures_c.items() if not k.upper().startswith(NOT_A_TEMPERATURE)]
        return max(temps) if temps else None

    @property
    def mean_cpu_mhz(self) -> float | None:
        return sum(self.cpu_mhz) / len(self.cpu_mhz) if self.cpu_mhz else None

    @property
    def power_rail(self) -> str | None:
        for name in INPUT_RAILS:
            if name in self.rails_mw:
                return name
        return "+".join(self.rails_mw) or None


def parse_line(line: str) -> TegraStats | None:
    """Parse one tegrastats line; None for a line with neither RAM nor power rails."""
    stats = TegraStats()
    if m := _RAM.search(line):
        stats.ram_used_bytes, stats.ram_total_bytes = int(m.group(1)) * MIB, int(m.group(2)) * MIB
    if m := _SWAP.search(line):
        stats.swap_used_bytes = int(m.group(1)) * MIB
    if m := _GR3D.search(line):
        stats.gpu_load_pct = float(m.group(1))
    if m := _EMC.search(line):
        stats.emc_load_pct = float(m.group(1))
    stats.temperatures_c = {name: float(v) for name, v in _TEMP.findall(line)}
    if m := _CPUS.search(line):
        stats.cpu_mhz = [int(mhz) for _, mhz in _CPU_CORE.findall(m.group(1))]
    for name, cur, avg in _RAIL.findall(line):
        if name in ("RAM", "SWAP", "IRAM"):
            continue
        stats.rails_mw[name] = (int(cur), int(avg))
    if stats.ram_used_bytes is None and not stats.rails_mw:
        return None
    return stats


class TegrastatsSource(TelemetrySource):
    name = "tegrastats"
    COMMAND = "tegrastats"

    @classmethod
    def probe(cls, device: DeviceProfile) -> str | None:
        if shutil.which(cls.COMMAND) is None:
            return f"`{cls.COMMAND}` not found on PATH (not a Jetson, or L4T tools not installed)"
        return None

    def __init__(self, device: DeviceProfile, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(device)
        self.interval_ms = interval_ms
        self.samples: deque[tuple[float, TegraStats]] = deque(maxlen=200_000)
        self._lock = threading.Lock()
        self._proc = subprocess.Popen([self.COMMAND, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._reader.start()
        self._t0 = 0.0
        self.window: list[TegraStats] = []

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            stats = parse_line(line)
            if stats is not None:
                with self._lock:
                    self.samples.append((time.perf_counter(), stats))

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> TelemetryReading:
        t1 = time.perf_counter()
        deadline = t1 + 3 * self.interval_ms / 1000.0
        while time.perf_counter() < deadline:  # wait for a reading past the window's end
            with self._lock:
                if self.samples and self.samples[-1][0] >= t1:
                    break
            if self._proc.poll() is not None:
                break
            time.sleep(self.interval_ms / 4000.0)
        with self._lock:
            snap = list(self.samples)
        points = [(t, s.board_power_w) for t, s in snap if s.board_power_w is not None]
        margin = self.interval_ms / 1000.0
        near = [(t, w) for t, w in points if self._t0 - margin <= t <= t1 + margin]
        self.window = [s for t, s in snap if self._t0 <= t <= t1]
        energy = window_energy_j(near, self._t0, t1) if near else None
        dt = t1 - self._t0
        # Heat and clocks over the sample: the readings inside it, else the nearest ones around it.
        around = self.window or [s for t, s in snap if self._t0 - margin <= t <= t1 + margin]
        temps = [x for s in around if (x := s.hottest_c) is not None]
        clocks = [x for s in around if (x := s.mean_cpu_mhz) is not None]
        return TelemetryReading(self.name, energy_j=energy,
                                mean_power_w=energy / dt if energy is not None and dt > 0 else None,
                                temp_c=max(temps) if temps else None,
                                cpu_mhz=sum(clocks) / len(clocks) if clocks else None)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
