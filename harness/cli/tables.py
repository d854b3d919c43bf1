"""Terminal tables of harness.rates figures (rich): the run's leaderboard and the deployable-candidates list.

Every cell is built with harness.cli.console.text, so model, device and rater names are shown as plain text
(never read as markup, control characters escaped), and names are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness import formatting as f
from harness.cli.console import terminal, text
from harness.rates import UNCALIBRATED_NOTE, LeaderboardRow


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run_table(rows: Sequence[LeaderboardRow]) -> Table:
    """The leaderboard printed at the end of a run: one row per device x model x variant, best first per
    device, harm and refusal beside the cost medians."""
    rater = next((r.harm_rater for r in rows if r.harm_rater), None)
    refusal = any(r.refusal_rater for r in rows)
    title = ("leaderboard: harm on harmful prompts by " + rater if rater else
             "leaderboard (no harm columns: no rated outputs on harmful prompts)") + ("; cost medians [interquartile range] without "
                                                                 "warm-up and contended samples, peak RSS is the "
                                                                 "maximum")
    table = Table(title=text(title))
    cols = ["device", "model", "variant"]
    if rater:
        cols += ["harm", "how", "n rated", "invalid"]
    if refusal:
        cols += ["refusal", "over-refusal"]
    qos = any(r.qos_max_gap is not None for r in rows)
    if qos:
        cols += ["refusal gap (p)"]
    cols += ["n", "size MB", "TTFT s", "prompt tok/s", "decode tok/s [IQR]", "latency s", "peak RSS MB", "J/token",
             "of BW bound", "cost excluded", "errors"]
    for col in cols:
        if col in ("device", "model", "variant"):
            table.add_column(text(col), justify="left", no_wrap=True)
        else:
            table.add_column(text(col), justify="right")
    for r in rows:
        cells = [r.device, f.model_name(r.model, r.base_model), r.variant]
        if rater:
            cells += [_fmt(r.harm_rate, ".0%"), r.harm_method or "-", _fmt(r.harm_n, "d"), _fmt(r.harm_n_invalid, "d")]
        if refusal:
            cells += [_fmt(r.refusal_rate, ".0%"), _fmt(r.over_refusal_rate, ".0%")]
        if qos:
            cells += [qos_gap(r)]
        cells += [
            str(r.n), _fmt(r.size_bytes and r.size_bytes / 1e6, ".0f"), _fmt(r.ttft_s, ".3f"),
            _fmt(r.prompt_tps, ".0f"), f.num_iqr(r.decode_tps, r.decode_tps_q1, r.decode_tps_q3),
            _fmt(r.latency_s, ".2f"), _fmt(r.peak_rss_bytes and r.peak_rss_bytes / 1e6, ".0f"),
            _fmt(r.energy_j_per_token, ".3f"), _fmt(r.bandwidth_fraction, ".0%"),
            f.excluded(r.n_contended, r.n_warmup), str(r.n_errors),
        ]
        table.add_row(*(text(str(c)) for c in cells))
    table.caption = harm_caption(rows)
    return table


def qos_gap(r: LeaderboardRow) -> str:
    """'25% religion (p=0.031)': the largest refusal gap between the groups of an axis, Holm-adjusted p."""
    if r.qos_max_gap is None:
        return "-"
    if not r.qos_axis:
        return f"{f.pct(r.qos_max_gap)} (no gap)"
    return f"{f.pct(r.qos_max_gap)} {r.qos_axis} (p={f.pvalue(r.qos_p)})"


def harm_caption(rows: Sequence[LeaderboardRow]) -> Text | None:
    """One line per way harm was obtained that needs saying (uncalibrated always does)."""
    lines = []
    methods = {r.harm_method for r in rows if r.harm_method}
    if "uncalibrated" in methods:
        why = sorted({(r.harm_note or "").removeprefix("uncalibrated: ") for r in rows
                      if r.harm_method == "uncalibrated" and r.harm_note and r.harm_note != UNCALIBRATED_NOTE})
        lines.append("WARNING uncalibrated harm: the judge's raw rate; " + ("; ".join(why) if why else
                     "nothing measured its errors against people (`harness judge calibrate`, or label some outputs)"))
    if "calibrated" in methods:
        cards = sorted({r.harm_card for r in rows if r.harm_card and r.harm_method == "calibrated"})
        lines.append("calibrated harm: corrected for the judge's error rates on " + ", ".join(cards)
                     + "; assumes it errs on these outputs as it did there")
    if "human-checked" in methods:
        lines.append("human-checked harm: prediction-powered estimate from people's labels of these outputs")
    lines.extend(f"WARNING {r.name} on {r.device}: {r.harm_judge_warning}" for r in rows if r.harm_judge_warning)
    warn = "uncalibrated" in methods or any(r.harm_judge_warning for r in rows)
    return text("\n".join(lines), style="yellow" if warn else "") if lines else None


def candidates_table(candidates: Sequence[LeaderboardRow]) -> Table:
    rater = next((c.harm_rater for c in candidates if c.harm_rater), None)
    n_pass = sum(c.passes for c in candidates)
    table = Table(title=text(f"{n_pass} of {len(candidates)} variant(s) meet the limits (best first)"))
    qos = any(c.qos_max_gap is not None for c in candidates)
    for col in ("#", "device", "model", "variant", f"harm ({rater or 'not judged'})",
                *(("refusal gap (p)",) if qos else ()), "decode tok/s [IQR]", "cost excluded", "peak RAM", "size",
                "ok", "why not"):
        table.add_column(text(col), justify="right" if col in ("#", "decode tok/s [IQR]", "peak RAM", "size")
                         else "left", overflow="fold")
    for i, c in enumerate(candidates, 1):
        harm = f.rate_ci(c.harm_rate, c.harm_ci_low, c.harm_ci_high) + (f" {c.harm_method}" if c.harm_method else "")
        cells = [str(i), c.device, f.model_name(c.model, c.base_model), c.variant, harm, *((qos_gap(c),) if qos else ()),
                 f.num_iqr(c.decode_tps, c.decode_tps_q1, c.decode_tps_q3), f.excluded(c.n_contended, c.n_warmup),
                 f.mb(c.peak_rss_bytes), f.mb(c.size_bytes), "yes" if c.passes else "no", "; ".join(c.reasons)]
        table.add_row(*(text(str(v)) for v in cells), style=None if c.passes else "dim")
    table.caption = harm_caption(candidates)
    return table


def print_table(table: Table, console: Console | None = None) -> None:
    (console or terminal(width=max(120, terminal().width))).print(table)
