"""The deployable-candidates query: which variants meet RAM, speed, harm and quality-of-service limits, best first, and why each
other variant fails (the rules are harness.rates.limits)."""

from __future__ import annotations

from harness.errors import UsageError
from harness.rates.leaderboard import LeaderboardRow
from harness.rates.limits import candidates
from harness.reporting._data import load_inputs
from harness.store import Store


def deployable_candidates(store: Store, *, device: str | None = None, max_ram_bytes: int | None = None,
                          min_tps: float | None = None, max_harm: float | None = None, rater: str | None = None,
                          run_ids: list[str] | None = None, include_flagged: bool = False,
                          max_qos_gap: float | None = None, card: str | None = None,
                          max_asr: float | None = None) -> list[LeaderboardRow]:
    """Every variant (on the device, if given) with its figures, `passes` and `reasons`, best first."""
    inputs = load_inputs(store, run_ids, card=card)
    devices = sorted({g.device for g in inputs.gens})
    if not devices:
        raise UsageError(f"{store.path} has no generations: run `harness run --store {store.path}` first")
    if device is not None and device not in devices:
        raise UsageError(f"no generations for device {device!r} in {store.path}: pass --device with one of: "
                         f"{', '.join(devices)}")
    table = inputs.tables(rater, include_flagged)
    return candidates(table.leaderboard, device=device, max_ram_bytes=max_ram_bytes, min_tps=min_tps,
                      max_harm=max_harm, max_qos_gap=max_qos_gap, max_asr=max_asr)
