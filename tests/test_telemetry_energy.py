"""Energy integration on synthetic power traces with known integrals, counter wraparound, the sampler."""

from __future__ import annotations

import time

import pytest

from harness.telemetry.energy import (
    PowerSampler,
    counter_delta,
    joules_per_token,
    trapezoid_energy_j,
    window_energy_j,
)


def test_trapezoid_is_exact_on_a_piecewise_linear_trace() -> None:
    # P(t) = 10 + 5t on [0, 2] then constant 20 W on [2, 4]:
    # integral = (10*2 + 5*2^2/2) + 20*2 = 30 + 40 = 70 J.
    times = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0]
    power = [10 + 5 * t if t <= 2 else 20.0 for t in times]
    assert trapezoid_energy_j(times, power) == pytest.approx(70.0)


def test_trapezoid_of_a_sawtooth_with_uneven_steps() -> None:
    # Triangles: 0 -> 8 W over 2 s (8 J), 8 -> 0 W over 0.5 s (2 J), 0 W for 1 s, then 0 -> 4 W over 1 s (2 J).
    times = [0.0, 2.0, 2.5, 3.5, 4.5]
    power = [0.0, 8.0, 0.0, 0.0, 4.0]
    assert trapezoid_energy_j(times, power) == pytest.approx(12.0)


def test_trapezoid_rejects_bad_traces() -> None:
    with pytest.raises(ValueError):
        trapezoid_energy_j([0.0, 1.0], [1.0])
    with pytest.raises(ValueError):
        trapezoid_energy_j([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    assert trapezoid_energy_j([5.0], [3.0]) == 0.0


def test_window_interpolates_at_both_edges() -> None:
    # Samples of P(t) = 10 + 5t at t = 0..3; window [0.5, 2.5]:
    # integral = 10*2 + 5*(2.5^2 - 0.5^2)/2 = 20 + 15 = 35 J (linear, so the trapezoid is exact).
    samples = [(float(t), 10 + 5.0 * t) for t in range(4)]
    assert window_energy_j(samples, 0.5, 2.5) == pytest.approx(35.0)


def test_window_holds_the_nearest_reading_outside_the_samples() -> None:
    # One reading of 6 W inside a 2 s window: held flat -> 12 J.
    assert window_energy_j([(1.0, 6.0)], 0.0, 2.0) == pytest.approx(12.0)
    # Samples only before the window: the last one (4 W) is held over 0.5 s.
    assert window_energy_j([(0.0, 2.0), (1.0, 4.0)], 3.0, 3.5) == pytest.approx(2.0)
    assert window_energy_j([], 0.0, 1.0) is None
    assert window_energy_j([(0.0, 1.0)], 2.0, 2.0) is None


def test_counter_delta_handles_one_wraparound() -> None:
    max_range = 262_143_328_850  # a real max_energy_range_uj value
    assert counter_delta(1_000, 5_500, max_range) == 4_500
    assert counter_delta(max_range - 1_000, 500, max_range) == 1_500
    with pytest.raises(ValueError):
        counter_delta(10, 5, None)


def test_joules_per_token() -> None:
    assert joules_per_token(12.0, 48) == pytest.approx(0.25)
    assert joules_per_token(None, 48) is None
    assert joules_per_token(3.0, 0) is None


def test_power_sampler_integrates_a_constant_draw() -> None:
    sampler = PowerSampler(lambda: 7.0, hz=50)
    sampler.start()
    time.sleep(0.3)
    samples = sampler.stop()
    assert len(samples) >= 5  # start + ~15 thread readings + stop
    span = samples[-1][0] - samples[0][0]
    assert span >= 0.29
    assert trapezoid_energy_j([t for t, _ in samples], [w for _, w in samples]) == pytest.approx(7.0 * span)


def test_power_sampler_skips_missing_readings() -> None:
    readings = iter([None, 3.0, None])
    sampler = PowerSampler(lambda: next(readings, 3.0), hz=1000)
    sampler.start()
    time.sleep(0.02)
    samples = sampler.stop()
    assert samples and all(w == 3.0 for _, w in samples)
