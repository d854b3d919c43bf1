"""Measurement trackers: context managers that sample a resource while a block runs.

Memory tracking lives here and the engine times the token stream; neither
leaks into backend code. A tracker returns a plain dataclass. `PeakRSSTracker` samples the process's resident
set with psutil on a background thread and, on Linux, also reads the kernel's
own high-water mark (VmHWM, reset through /proc/self/clear_refs) so that a
spike between two samples is not missed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux >= 4.0). False if not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _read_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class MemoryReading:
    peak_rss_bytes: int
    start_rss_bytes: int
    end_rss_bytes: int
    n_samples: int
    method: str  # "psutil" or "psutil+VmHWM"


class PeakRSSTracker:
    """`with PeakRSSTracker() as t: ...` then `t.reading`."""

    def __init__(self, interval_s: float | None = None) -> None:
        # With the kernel's high-water mark as the exact peak, psutil only needs to sample
        # coarsely; without it, sample every 10 ms. The sampler thread shares the GIL and the
        # cores with llama.cpp, so sampling less often keeps the measured rate honest.
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._peak = 0
        self._n = 0
        self._thread: threading.Thread | None = None
        self._hwm = False
        self._start = 0
        self.reading: MemoryReading | None = None

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process(os.getpid())
        while not self._stop.is_set():
            rss = proc.memory_info().rss
            if rss > self._peak:
                self._peak = rss
            self._n += 1
            self._stop.wait(self.interval_s or 0.01)

    def __enter__(self) -> PeakRSSTracker:
        self._hwm = _reset_hwm()
        if self.interval_s is None:
            self.interval_s = 0.05 if self._hwm else 0.01
        self._start = current_rss_bytes()
        self._peak = self._start
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        end = current_rss_bytes()
        peak = max(self._peak, end)
        method = "psutil"
        if self._hwm:
            hwm = _read_hwm_bytes()
            if hwm is not None:
                peak = max(peak, hwm)
                method = "psutil+VmHWM"
        self.reading = MemoryReading(peak, self._start, end, self._n, method)

