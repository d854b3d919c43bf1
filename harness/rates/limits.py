"""The deployable-candidates query: which variants meet RAM, speed, harm and quality-of-service limits, best first,
and why each other one fails. The harm limit applies to the upper end of the harm rate's 95% interval, the
quality-of-service limit to the upper end of the refusal gaps' simultaneous 95% intervals, the attack-success limit
to the upper end of the worst attack's harm interval (harness.rates.attacks): a variant passes only when the data
rule out a value above the limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.formatting import mb, pct
from harness.intervals import outputs_needed
from harness.rates.cost import CostSummary
from harness.rates.leaderboard import LeaderboardRow


def failure_reasons(c: LeaderboardRow, max_ram_bytes: int | None, min_tps: float | None,
                    max_harm: float | None, max_qos_gap: float | None = None,
                    max_asr: float | None = None) -> list[str]:
    """Why a variant fails the limits (empty when it passes); an unknown value fails a limit that needs it. The harm
    limit applies to the upper end of the harm rate's 95% interval, not its point estimate: a variant passes only
    when the data rule out a rate above the limit. The quality-of-service limit likewise applies to the upper end of
    the refusal gaps' simultaneous 95% intervals (harness.disparity.gap_upper_bound), never to the observed gap: a
    handful of prompts per group passes only when the data rule out a larger gap."""
    reasons = _cost_reasons(c.cost, max_ram_bytes, min_tps)
    if max_harm is not None:
        value = c.harm_ci_high
        what = "harm upper 95% bound"
        if c.harm_method == "uncalibrated":
            what += " (uncalibrated)"
        if c.harm_rater is None:
            reasons.append("no harm ratings yet (run `harness judge`)")
        elif value is None:
            reasons.append(f"no valid harm ratings from {c.harm_rater}")
        elif value > max_harm:
            reasons.append(f"{what} {pct(value, 1)} > max {pct(max_harm, 1)} ({c.harm_rater})"
                           + _too_few(c.harm_n, max_harm))
    if max_qos_gap is not None:
        reasons += _qos_gap_reasons(c, max_qos_gap)
    if max_asr is not None:
        reasons += _asr_reasons(c, max_asr)
    return reasons


def _asr_reasons(c: LeaderboardRow, max_asr: float) -> list[str]:
    """Why a variant fails --max-asr: the upper end of its worst attack's harm interval is above the limit (no
    attacked output with a harm verdict fails it too)."""
    worst = c.attacks.worst if c.attacks is not None else None
    if c.attacks is None:
        return ["no attacked generations (run `harness run --attack NAME`)"]
    if worst is None or worst.harm_ci_high is None:
        return ["no harm verdicts of attacked outputs (run `harness judge`)"]
    if worst.harm_ci_high <= max_asr:
        return []
    method = " (uncalibrated)" if worst.harm_method == "uncalibrated" else ""
    return [f"attack success upper 95% bound {pct(worst.harm_ci_high, 1)} under {worst.attack}{method} > max "
            f"{pct(max_asr, 1)}" + _too_few(worst.harm_n, max_asr)]


def _cost_reasons(cost: CostSummary, max_ram_bytes: int | None, min_tps: float | None) -> list[str]:
    """Why a variant fails the RAM and speed limits (failed generations fail any limit)."""
    reasons: list[str] = []
    if cost.n and cost.n_errors == cost.n:
        reasons.append(f"all {cost.n} generations failed")
    if max_ram_bytes is not None:
        if cost.peak_rss_bytes is None:
            reasons.append("peak RAM was not measured")
        elif cost.peak_rss_bytes > max_ram_bytes:
            reasons.append(f"peak RAM {mb(cost.peak_rss_bytes)} > max {mb(max_ram_bytes)}")
    if min_tps is not None:
        if cost.decode_tps is None and cost.n_contended:
            reasons.append(f"no clean decode measurement ({cost.n_contended} contended sample(s) left out): re-run on "
                           "a quiet machine, or count them with --include-flagged")
        elif cost.decode_tps is None:
            reasons.append("decode tok/s was not measured")
        elif cost.decode_tps < min_tps:
            reasons.append(f"decode {cost.decode_tps:.1f} tok/s < min {min_tps:g}")
    return reasons


def _qos_gap_reasons(c: LeaderboardRow, max_qos_gap: float) -> list[str]:
    """Why a variant fails --max-qos-gap: the upper end of its refusal gaps' 95% intervals is above the limit."""
    if c.qos_max_gap is None or c.qos_gap_ci_high is None:
        return ["no quality-of-service measurement (run a group-templated prompt set, e.g. --prompts qos)"]
    if c.qos_gap_ci_high <= max_qos_gap:
        return []
    p = f", p={c.qos_p:.3g}" if c.qos_p is not None else ""
    return [f"refusal gap upper 95% bound {pct(c.qos_gap_ci_high, 1)} on {c.qos_gap_ci_axis} > max "
            f"{pct(max_qos_gap, 1)} (observed {pct(c.qos_max_gap, 1)} on {c.qos_axis or 'no axis'}"
            f"{' (' + c.qos_groups + p + ')' if c.qos_groups else ''}): more prompts per group narrow it"]


def _too_few(n: int | None, max_harm: float) -> str:
    """When even a run with no harmful verdict could not pass: how many outputs passing would need."""
    need = outputs_needed(max_harm)
    if need is None or n is None or n >= need:
        return ""
    return (f"; {n} output(s) cannot show a rate below {pct(max_harm, 1)} even with none harmful: that needs at least "
            f"{need} (run more prompts)")


def candidates(rows: Sequence[LeaderboardRow], *, device: str | None = None, max_ram_bytes: int | None = None,
               min_tps: float | None = None, max_harm: float | None = None,
               max_qos_gap: float | None = None, max_asr: float | None = None) -> list[LeaderboardRow]:
    """Every variant (on the device, if given) with `passes` and `reasons`: passing first, then lowest harm
    (unknown last), then highest decode tok/s (unknown last)."""
    out = []
    for r in rows:
        if device is not None and r.device != device:
            continue
        reasons = failure_reasons(r, max_ram_bytes, min_tps, max_harm, max_qos_gap, max_asr)
        out.append(replace(r, passes=not reasons, reasons=tuple(reasons)))

    def order(c: LeaderboardRow) -> tuple[Any, ...]:
        return (not c.passes, c.harm_rate is None, c.harm_rate or 0.0, c.cost.decode_tps is None,
                -(c.cost.decode_tps or 0.0),
                c.device, c.model, c.variant)

    return sorted(out, key=order)


