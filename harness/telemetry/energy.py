"""Energy from power readings: trapezoidal integration, windowing, counter wraparound, and a sampling thread.

Pure functions take plain lists (times in seconds, power in watts) so they can
be checked against traces with a known integral; `PowerSampler` is the only
part with a thread and a clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

SAMPLE_HZ = 20.0  # power sampling rate of the polling sources (NVML)


def trapezoid_energy_j(times_s: Sequence[float], power_w: Sequence[float]) -> float:
    """Integral of power over time by the trapezoidal rule, in joules. Needs times in increasing order."""
    if len(times_s) != len(power_w):
        raise ValueError(f"{len(times_s)} times but {len(power_w)} power readings")
    total = 0.0
    for i in range(1, len(times_s)):
        dt = times_s[i] - times_s[i - 1]
        if dt < 0:
            raise ValueError("times must not decrease")
        total += 0.5 * (power_w[i] + power_w[i - 1]) * dt
    return total


def _interpolate(t: float, t0: float, p0: float, t1: float, p1: float) -> float:
    return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)


def window_energy_j(samples: Sequence[tuple[float, float]], start_s: float, end_s: float) -> float | None:
    """Energy in [start_s, end_s] from (time_s, power_w) samples, interpolating power linearly at both edges.

    Outside the samples' span the nearest reading is held. None when there are no samples or the window is empty.
    """
    if not samples or end_s <= start_s:
        return None
    pts = sorted(samples)

    def power_at(t: float) -> float:
        if t <= pts[0][0]:
            return pts[0][1]
        if t >= pts[-1][0]:
            return pts[-1][1]
        for (ta, pa), (tb, pb) in zip(pts, pts[1:]):
            if ta <= t <= tb:
                return _interpolate(t, ta, pa, tb, pb)
        return pts[-1][1]  # pragma: no cover - the loop always finds a segment

    inner = [(t, p) for t, p in pts if start_s < t < end_s]
    times = [start_s, *(t for t, _ in inner), end_s]
    power = [power_at(start_s), *(p for _, p in inner), power_at(end_s)]
    return trapezoid_energy_j(times, power)


def counter_delta(start: int, end: int, max_range: int | None) -> int:
    """Increase of a wrapping energy counter (RAPL energy_uj) between two reads; assumes at most one wrap."""
    if end >= start:
        return end - start
    if not max_range:
        raise ValueError("the counter went down and its range is unknown")
    return max_range - start + end


def joules_per_token(energy_j: float | None, n_tokens: int | None) -> float | None:
    """Energy per output token; None when either is unknown or no token was produced."""
    if energy_j is None or not n_tokens:
        return None
    return energy_j / n_tokens


class PowerSampler:
    """Calls `read_power_w()` about SAMPLE_HZ times a second on a thread, between start() and stop().

    A reading is also taken at start and at stop, so short samples still have two points.
    """

    def __init__(self, read_power_w: Callable[[], float | None], hz: float = SAMPLE_HZ,
                 on_sample: Callable[[], None] | None = None) -> None:
        self._read = read_power_w
        self._interval_s = 1.0 / hz
        self._on_sample = on_sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[tuple[float, float]] = []

    def _take(self) -> None:
        w = self._read()
        if w is not None:
            self.samples.append((time.perf_counter(), float(w)))
        if self._on_sample:
            self._on_sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._take()

    def start(self) -> None:
        self.samples = []
        self._stop.clear()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None
        self._take()
        return list(self.samples)
