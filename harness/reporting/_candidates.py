"""The deployable-candidates query: which variants meet RAM, speed and harm limits, best first,
and why each other variant fails."""

from __future__ import annotations

import math
from typing import Any

from harness.errors import UsageError
from harness.reporting import _format as f
from harness.reporting._data import load
from harness.reporting._tables import (
    choose_primary_rater,
    choose_refusal_rater,
    harm_rates,
    leaderboard,
    refusal_rates,
)
from harness.store import Store

FIELDS = ["device", "model", "variant", "backend", "harm_rater", "harm_rate", "harm_ci_low", "harm_ci_high", "harm_n",
          "harm_n_invalid", "refusal_rate", "over_refusal_rate", "decode_tps", "ttft_s", "latency_p90_s",
          "peak_rss_bytes", "peak_vram_bytes", "size_bytes", "n", "n_errors"]

INTEGER_FIELDS = ["harm_n", "harm_n_invalid", "peak_rss_bytes", "peak_vram_bytes", "size_bytes", "n", "n_errors"]


def _plain(v: Any) -> Any:
    """numpy / pandas scalars to JSON-ready Python values; NaN and NA to None."""
    if v is None or f.missing(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def failure_reasons(c: dict[str, Any], max_ram_bytes: int | None, min_tps: float | None, max_harm: float | None,
                    use_upper_bound: bool) -> list[str]:
    """Why a candidate fails the limits (empty when it passes). Pure: unknown values fail a limit that needs them."""
    reasons: list[str] = []
    if c["n"] and c["n_errors"] == c["n"]:
        reasons.append(f"all {c['n']} generations failed")
    if max_ram_bytes is not None:
        if c["peak_rss_bytes"] is None:
            reasons.append("peak RAM was not measured")
        elif c["peak_rss_bytes"] > max_ram_bytes:
            reasons.append(f"peak RAM {f.mb(c['peak_rss_bytes'])} > max {f.mb(max_ram_bytes)}")
    if min_tps is not None:
        if c["decode_tps"] is None:
            reasons.append("decode tok/s was not measured")
        elif c["decode_tps"] < min_tps:
            reasons.append(f"decode {c['decode_tps']:.1f} tok/s < min {min_tps:g}")
    if max_harm is not None:
        value = c["harm_ci_high"] if use_upper_bound else c["harm_rate"]
        what = "harm upper 95% bound" if use_upper_bound else "harm"
        if c["harm_rater"] is None:
            reasons.append("no harm ratings yet (run `harness judge`)")
        elif value is None:
            reasons.append(f"no valid harm ratings from {c['harm_rater']}")
        elif value > max_harm:
            reasons.append(f"{what} {f.pct(value, 1)} > max {f.pct(max_harm, 1)} ({c['harm_rater']})")
    return reasons


def sort_key(c: dict[str, Any]) -> tuple[Any, ...]:
    """Passing first, then lowest harm (unknown last), then highest decode tok/s (unknown last)."""
    harm = c["harm_rate"]
    tps = c["decode_tps"]
    return (not c["passes"], harm is None, harm if harm is not None else 0.0, tps is None, -(tps or 0.0),
            c["device"], c["model"], c["variant"])


def deployable_candidates(store: Store, *, device: str | None = None, max_ram_bytes: int | None = None,
                          min_tps: float | None = None, max_harm: float | None = None, rater: str | None = None,
                          run_ids: list[str] | None = None, use_upper_bound: bool = False) -> list[dict[str, Any]]:
    """Every variant (on the device, if given) with its metrics, `passes` and `reasons`, best first."""
    data = load(store, run_ids)
    devices = sorted(set(data.generations["device"]))
    if not devices:
        raise UsageError(f"{store.path} has no generations: run `harness run --store {store.path}` first")
    if device is not None and device not in devices:
        raise UsageError(f"no generations for device {device!r} in {store.path}: pass --device with one of: "
                         f"{', '.join(devices)}")
    rates = harm_rates(data)
    refusals = refusal_rates(data)
    primary = choose_primary_rater(rates, rater)
    board = leaderboard(data, rates, refusals, primary, choose_refusal_rater(refusals))
    if device is not None:
        board = board[board["device"] == device]
    out = []
    for r in board.to_dict("records"):
        c = {k: _plain(r.get(k)) for k in FIELDS if k != "harm_rater"}
        for k in INTEGER_FIELDS:
            if isinstance(c[k], float):
                c[k] = int(c[k])
        c["harm_rater"] = primary
        c["passes"] = False
        c["reasons"] = failure_reasons(c, max_ram_bytes, min_tps, max_harm, use_upper_bound)
        c["passes"] = not c["reasons"]
        out.append({k: c[k] for k in [*FIELDS, "passes", "reasons"]})
    return sorted(out, key=sort_key)
