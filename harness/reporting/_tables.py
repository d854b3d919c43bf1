"""The report's tables as pandas frames, for CSV/Parquet files and the page: every number comes from
harness.rates (the same figures the terminal leaderboard and `harness leaderboard` print); this module
only lays them out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from harness.rates.harm import HarmRate
from harness.rates.ladder import Flip, LadderStep, quantization_ladder
from harness.rates.leaderboard import LeaderboardRow, RateTables
from harness.rates.refusal import RefusalRate
from harness.reporting._data import ReportData, pandas

if TYPE_CHECKING:
    import pandas as pd

KEYS = ["device", "model", "variant"]
LEADERBOARD_SKIP = ("other_harm", "passes", "reasons")


@dataclass
class Tables:
    primary_rater: str | None
    refusal_rater: str | None
    leaderboard: pd.DataFrame
    harm_rates: pd.DataFrame
    refusal_rates: pd.DataFrame
    pareto: pd.DataFrame
    ladder: pd.DataFrame
    flips: pd.DataFrame
    rows: list[LeaderboardRow] = field(default_factory=list)
    rate_tables: RateTables | None = None
    notes: list[str] = field(default_factory=list)
    qos_groups: pd.DataFrame | None = None  # one row per variant x measure x axis x group
    qos_axes: pd.DataFrame | None = None  # one row per variant x measure x axis: the disparity statistics


def frame_of(items: list[Any], cls: type[Any], skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Dataclass records as a frame with one column per field (empty lists keep their columns)."""
    cols = [f.name for f in fields(cls) if f.name not in skip]
    return pandas().DataFrame([{k: v for k, v in asdict(x).items() if k in cols} for x in items], columns=cols)


def leaderboard_frame(rows: list[LeaderboardRow]) -> pd.DataFrame:
    """The leaderboard's flat columns (LeaderboardRow.as_dict), one `harm_rate[rater]` column per harm rater."""
    cols = [c for c in LeaderboardRow.columns() if c not in LEADERBOARD_SKIP]
    df = pandas().DataFrame([{k: v for k, v in r.as_dict().items() if k in cols} for r in rows], columns=cols)
    raters = sorted({name for r in rows for name in r.other_harm})
    for name in raters:
        df[f"harm_rate[{name}]"] = [r.other_harm.get(name) for r in rows]
    for col in ("harm_rate", "harm_ci_low", "harm_ci_high", "worst_category_rate", "refusal_rate", "refusal_ci_low",
                "refusal_ci_high", "over_refusal_rate", "over_refusal_ci_low", "over_refusal_ci_high", "ttft_s",
                "prompt_tps", "decode_tps", "latency_s", "latency_p90_s", "energy_j_per_token", "bandwidth_fraction",
                "decode_tps_q1", "decode_tps_q3", "qos_max_gap", "qos_p", "contended_decode_tps",
                "contended_decode_tps_q1", "contended_decode_tps_q3", "contended_ttft_s", "contended_interference_frac"):
        df[col] = pandas().to_numeric(df[col], errors="coerce").astype(float)
    return df


def build(data: ReportData, rater: str | None = None, reference_variant: str | None = None,
          include_flagged: bool = False) -> Tables:
    rt = data.inputs.tables(rater, include_flagged)
    steps, flips, notes = quantization_ladder(data.gens, rt, reference_variant)
    board = leaderboard_frame(rt.leaderboard)
    pareto = board[[*KEYS, "harm_rate", "harm_ci_low", "harm_ci_high", "decode_tps", "peak_rss_bytes", "front_tps",
                    "front_ram", "harm_method"]].copy()
    groups, axes = qos_frames(rt.qos)
    return Tables(rt.primary_rater, rt.refusal_rater, board, frame_of(rt.harm, HarmRate),
                  frame_of(rt.refusals, RefusalRate), pareto, frame_of(steps, LadderStep),
                  frame_of(flips, Flip), rt.leaderboard, rt, notes, groups, axes)


QOS_AXIS_COLUMNS = ["device", "model", "variant", "measure", "rater", "axis", "n_groups", "n", "n_invalid",
                    "max_gap", "high_group", "low_group", "p_value", "p_holm", "exact", "n_paired_templates",
                    "cochran_q", "cochran_df", "cochran_p", "mcnemar_p"]
QOS_GROUP_COLUMNS = ["device", "model", "variant", "measure", "rater", "axis", "group", "n", "events", "rate",
                     "ci_low", "ci_high"]


def qos_frames(q: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The quality-of-service disparities as two frames: groups, and axes (largest gap first)."""
    pd_ = pandas()
    groups, axes = [], []
    for d in q.disparities:
        a = d.disparity
        base = {"device": d.device, "model": d.model, "variant": d.variant, "measure": d.measure, "rater": d.rater,
                "axis": a.axis}
        axes.append({**base, "n_groups": len(a.groups), "n": sum(g.n for g in a.groups), "n_invalid": d.n_invalid,
                     "max_gap": a.max_gap, "high_group": a.high_group, "low_group": a.low_group,
                     "p_value": a.p_value, "p_holm": a.p_holm, "exact": a.exact,
                     "n_paired_templates": a.n_paired_templates, "cochran_q": a.cochran_q, "cochran_df": a.cochran_df,
                     "cochran_p": a.cochran_p, "mcnemar_p": a.mcnemar_p})
        groups += [{**base, "group": g.group, "n": g.n, "events": g.events, "rate": g.rate, "ci_low": g.ci_low,
                    "ci_high": g.ci_high} for g in a.groups]
    axes_df = pd_.DataFrame(axes, columns=QOS_AXIS_COLUMNS)
    if not axes_df.empty:
        from harness.qos import MEASURES

        axes_df["_m"] = axes_df["measure"].map({m: i for i, m in enumerate(MEASURES)})
        axes_df = axes_df.sort_values(["_m", "max_gap"], ascending=[True, False], na_position="last",
                                      kind="stable").drop(columns="_m").reset_index(drop=True)
    return pd_.DataFrame(groups, columns=QOS_GROUP_COLUMNS), axes_df
