"""The NVML source against a stand-in pynvml (no GPU here) built from the real package's types and errors.

The stand-in keeps the real module's NVMLError classes, process-info structs
(`pid`, `usedGpuMemory` in bytes, None when not available), memory structs
and units (power in mW, the energy counter in mJ); only the calls that need a
driver are replaced.
"""

from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Callable

import pynvml as real
import pytest

from harness.devices import load_profile
from harness.telemetry.nvml import NvmlSource, process_vram_bytes, visible_indices

MIB = 1024 * 1024


def _proc(pid: int, used: int | None) -> object:
    info = real.nvmlStructToFriendlyObject(
        real.c_nvmlProcessInfo_v2_t(pid, used if used is not None else 0, 0xFFFFFFFF, 0xFFFFFFFF))
    if used is None:  # what pynvml does for NVML_VALUE_NOT_AVAILABLE
        info.usedGpuMemory = None
    return info


class FakeGpu:
    def __init__(self, power_mw: int = 150_000, energy_counter: bool = True,
                 procs: Callable[[], list[object]] = list, used_bytes: Callable[[], int] = lambda: 1000 * MIB) -> None:
        self.power_mw = power_mw
        self.energy_counter = energy_counter
        self.procs = procs
        self.used_bytes = used_bytes
        self.t0 = time.perf_counter()


def fake_pynvml(gpus: list[FakeGpu], init_error: int | None = None) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith(("NVMLError", "NVML_", "c_nvml")):
            setattr(m, name, getattr(real, name))
    m.initialised = 0  # type: ignore[attr-defined]

    def init() -> None:
        if init_error is not None:
            raise real.NVMLError(init_error)
        m.initialised += 1  # type: ignore[attr-defined]

    def shutdown() -> None:
        m.initialised -= 1  # type: ignore[attr-defined]

    def energy(h: FakeGpu) -> int:
        if not h.energy_counter:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        # a board drawing power_mw since t0: mJ = mW * s
        return int(5_000_000 + h.power_mw * (time.perf_counter() - h.t0))

    def memory(h: FakeGpu) -> object:
        total = 24 * 1024 * MIB
        used = h.used_bytes()
        return real.c_nvmlMemory_t(total, total - used, used)

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]  # type: ignore[attr-defined]
    m.nvmlDeviceGetPowerUsage = lambda h: h.power_mw  # type: ignore[attr-defined]
    m.nvmlDeviceGetTotalEnergyConsumption = energy  # type: ignore[attr-defined]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: h.procs()  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    return m


@pytest.fixture
def cuda_device():  # type: ignore[no-untyped-def]
    return load_profile("cuda-gpu")


def install(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_probe_on_this_host_names_the_missing_driver(cuda_device) -> None:  # type: ignore[no-untyped-def]
    reason = NvmlSource.probe(cuda_device)  # the real pynvml, no NVIDIA driver here
    assert reason is not None and "NVML" in reason


def test_probe_reasons(monkeypatch: pytest.MonkeyPatch, cuda_device) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, fake_pynvml([], init_error=real.NVML_ERROR_DRIVER_NOT_LOADED))
    assert "Driver Not Loaded" in (NvmlSource.probe(cuda_device) or "")
    install(monkeypatch, fake_pynvml([]))
    assert NvmlSource.probe(cuda_device) == "NVML found no NVIDIA GPU"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert "pip install 'harness[nvidia]'" in (NvmlSource.probe(cuda_device) or "")


def test_peak_process_vram_and_energy_counter(monkeypatch: pytest.MonkeyPatch, cuda_device) -> None:  # type: ignore[no-untyped-def]
    me = os.getpid()
    mine = iter([512 * MIB, 1536 * MIB])  # rises to 1.5 GiB during the sample, then settles at 1 GiB

    def procs() -> list[object]:
        return [_proc(4242, 8 * 1024 * MIB), _proc(me, next(mine, 1024 * MIB))]

    gpu = FakeGpu(power_mw=150_000, procs=procs)
    install(monkeypatch, fake_pynvml([gpu]))
    assert NvmlSource.probe(cuda_device) is None
    src = NvmlSource(cuda_device)
    assert src.has_energy_counter
    src.start()
    time.sleep(0.25)
    reading = src.stop()
    src.close()
    assert reading.source == "nvml"
    assert reading.peak_vram_bytes == 1536 * MIB  # the other process's 8 GiB is not ours
    assert src.vram_method == "process"
    assert reading.mean_power_w == pytest.approx(150.0, rel=0.05)
    assert reading.energy_j == pytest.approx(150.0 * 0.25, rel=0.2)


def test_power_sampling_when_the_board_has_no_energy_counter(monkeypatch: pytest.MonkeyPatch, cuda_device) -> None:  # type: ignore[no-untyped-def]
    gpu = FakeGpu(power_mw=80_000, energy_counter=False, procs=lambda: [_proc(os.getpid(), 256 * MIB)])
    install(monkeypatch, fake_pynvml([gpu]))
    src = NvmlSource(cuda_device)
    assert not src.has_energy_counter
    src.start()
    time.sleep(0.3)
    reading = src.stop()
    assert len(src._samples) >= 3
    span = src._samples[-1][0] - src._samples[0][0]
    assert reading.energy_j == pytest.approx(80.0 * span, rel=1e-6)  # constant 80 W integrated exactly
    assert reading.peak_vram_bytes == 256 * MIB


def test_board_memory_rise_when_the_process_is_not_visible(monkeypatch: pytest.MonkeyPatch, cuda_device) -> None:  # type: ignore[no-untyped-def]
    used = iter([1000 * MIB, 1800 * MIB, 1700 * MIB])  # base at open, then during the sample
    gpu = FakeGpu(procs=lambda: [_proc(os.getpid(), None)], used_bytes=lambda: next(used, 1200 * MIB))
    install(monkeypatch, fake_pynvml([gpu]))
    src = NvmlSource(cuda_device)
    src.start()
    time.sleep(0.1)
    reading = src.stop()
    assert src.vram_method == "board-rise"
    assert reading.peak_vram_bytes == 800 * MIB


def test_cuda_visible_devices_selects_the_watched_gpus(monkeypatch: pytest.MonkeyPatch, cuda_device) -> None:  # type: ignore[no-untyped-def]
    gpus = [FakeGpu(power_mw=300_000), FakeGpu(power_mw=50_000)]
    install(monkeypatch, fake_pynvml(gpus))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    src = NvmlSource(cuda_device)
    assert src.indices == [1]
    src.start()
    time.sleep(0.1)
    assert src.stop().mean_power_w == pytest.approx(50.0, rel=0.05)


def test_helpers() -> None:
    assert visible_indices(3, None) == [0, 1, 2]
    assert visible_indices(3, "2,0") == [2, 0]
    assert visible_indices(3, "GPU-8f2c,1") == [1]
    assert visible_indices(2, "") == [0, 1]
    assert process_vram_bytes([_proc(7, 100), _proc(8, 50), _proc(7, 20)], 7) == 120
    assert process_vram_bytes([_proc(7, None)], 7) is None
    assert process_vram_bytes([_proc(8, 1)], 7) is None
