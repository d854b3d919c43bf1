"""NVIDIA GPU telemetry through NVML (`nvidia-ml-py`, imported as `pynvml`): peak VRAM and board energy.

Watched GPUs: those named by CUDA_VISIBLE_DEVICES (numeric indices), else all.
Peak VRAM is this process's `usedGpuMemory` (bytes) from
`nvmlDeviceGetComputeRunningProcesses`, sampled about 20 times a second and
summed over the watched GPUs; where NVML cannot see this process (another PID
namespace) or reports no per-process figure, the rise of the board's used
memory over the run's start is taken instead. Energy is the difference of
`nvmlDeviceGetTotalEnergyConsumption` (millijoules, Volta and later) when the
board supports it, else the trapezoidal integral of `nvmlDeviceGetPowerUsage`
(milliwatts). Board power includes the GPU's idle draw.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from harness.telemetry.base import TelemetryReading, TelemetrySource
from harness.telemetry.energy import SAMPLE_HZ, trapezoid_energy_j

if TYPE_CHECKING:
    from harness.devices import DeviceProfile


def _pynvml() -> Any:
    return importlib.import_module("pynvml")


def visible_indices(count: int, env: str | None) -> list[int]:
    """GPU indices named by CUDA_VISIBLE_DEVICES (numeric entries only), else all `count` GPUs."""
    if env is None or not env.strip():
        return list(range(count))
    out = []
    for part in env.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count:
            out.append(int(part))
        elif part.startswith("-"):
            break  # CUDA stops at the first invalid entry
    return out or list(range(count))


def process_vram_bytes(procs: list[Any], pid: int) -> int | None:
    """This PID's used GPU memory in bytes from NVML process records; None if absent or not reported."""
    used = [p.usedGpuMemory for p in procs if int(p.pid) == pid]
    if not used or all(u is None for u in used):
        return None
    return sum(int(u) for u in used if u is not None)


class NvmlSource(TelemetrySource):
    name = "nvml"

    @classmethod
    def probe(cls, device: DeviceProfile) -> str | None:
        try:
            nv = _pynvml()
        except ImportError:
            return "nvidia-ml-py is not installed: pip install 'harness[nvidia]'"
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            return f"NVML unavailable ({exc}): no NVIDIA driver on this host"
        try:
            if nv.nvmlDeviceGetCount() == 0:
                return "NVML found no NVIDIA GPU"
        finally:
            nv.nvmlShutdown()
        return None

    def __init__(self, device: DeviceProfile) -> None:
        super().__init__(device)
        self.nv = _pynvml()
        self.nv.nvmlInit()
        count = self.nv.nvmlDeviceGetCount()
        self.indices = visible_indices(count, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in self.indices]
        self.pid = os.getpid()
        self.base_used_bytes = [int(self.nv.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles]
        self.has_energy_counter = True
        try:
            for h in self.handles:
                self.nv.nvmlDeviceGetTotalEnergyConsumption(h)
        except self.nv.NVMLError:
            self.has_energy_counter = False
        self.vram_method = "process"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[tuple[float, float]] = []
        self._peak_process: int | None = None
        self._peak_board_rise = 0
        self._energy_start: list[int] = []

    # one reading of everything the sampling thread watches
    def _sample(self) -> None:
        nv = self.nv
        proc_total: int | None = None
        rise = 0
        power_mw = 0
        for h, base in zip(self.handles, self.base_used_bytes):
            try:
                mine = process_vram_bytes(nv.nvmlDeviceGetComputeRunningProcesses(h), self.pid)
            except nv.NVMLError:
                mine = None
            if mine is not None:
                proc_total = (proc_total or 0) + mine
            rise += max(0, int(nv.nvmlDeviceGetMemoryInfo(h).used) - base)
            if not self.has_energy_counter:
                power_mw += int(nv.nvmlDeviceGetPowerUsage(h))
        if proc_total is not None:
            self._peak_process = max(self._peak_process or 0, proc_total)
        self._peak_board_rise = max(self._peak_board_rise, rise)
        if not self.has_energy_counter:
            self._samples.append((time.perf_counter(), power_mw / 1000.0))

    def _loop(self) -> None:
        while not self._stop.wait(1.0 / SAMPLE_HZ):
            self._sample()

    def start(self) -> None:
        self._samples = []
        self._peak_process = None
        self._peak_board_rise = 0
        self._t0 = time.perf_counter()
        if self.has_energy_counter:
            self._energy_start = [int(self.nv.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> TelemetryReading:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None
        self._sample()
        dt = time.perf_counter() - self._t0
        if self.has_energy_counter:
            end = [int(self.nv.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]
            energy_j = sum(e - s for s, e in zip(self._energy_start, end)) / 1000.0
        else:
            energy_j = trapezoid_energy_j([t for t, _ in self._samples], [w for _, w in self._samples])
        if self._peak_process is not None:
            self.vram_method, peak = "process", self._peak_process
        else:
            self.vram_method, peak = "board-rise", self._peak_board_rise
        return TelemetryReading(self.name, peak_vram_bytes=peak, energy_j=energy_j,
                                mean_power_w=energy_j / dt if dt > 0 else None)

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass
