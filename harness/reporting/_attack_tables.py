"""The figures under attack as flat tables, for CSV and Parquet (the report's tables/ folder, `harness export`): the
same figures `harness leaderboard --json` and leaderboard.md show (harness.rates.attacks), one row per record.

  attacks            device x model x variant x attack: harm under the attack (its attack success rate, estimated
                     and marked as the baseline's, exact 95% interval, and the raw rate), refusal under it (95%
                     interval), the n of each, and whether it is the variant's worst attack
  attack_summary     device x model x variant: the worst attack (highest upper 95% bound) and its harm, and the
                     behaviours broken by any attack (n, of, share with its exact interval)
  harm_by_category   device x model x variant x category: the primary rater's raw harm on the no-attack baseline's
                     harmful prompts, exact 95% interval

Only a selection with attacked generations has them: a store without attacks writes the tables it always wrote.
Rows are plain dicts (no pandas), so every surface writes the same values.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from harness.rates.attacks import AttackRate, CategoryRate
from harness.rates.leaderboard import LeaderboardRow, RateTables

if TYPE_CHECKING:
    import pandas as pd

KEYS = ("device", "model", "variant")
ATTACK_COLUMNS = [*KEYS, "harm_rater", *(f.name for f in fields(AttackRate)), "refusal_rater", "worst"]
SUMMARY_COLUMNS = [*KEYS, "harm_rater", "n_attacks", "worst_attack", "worst_harm_rate", "worst_harm_ci_low",
                   "worst_harm_ci_high", "worst_harm_n", "broken_n", "broken_of", "broken_rate", "broken_ci_low",
                   "broken_ci_high"]
CATEGORY_COLUMNS = [*KEYS, "harm_rater", *(f.name for f in fields(CategoryRate))]
COUNT_COLUMNS = {"harm_n", "refusal_n", "n_attacks", "worst_harm_n", "broken_n", "broken_of", "n_valid", "n_harmful"}
ATTACK_TABLES = {"attacks": ATTACK_COLUMNS, "attack_summary": SUMMARY_COLUMNS, "harm_by_category": CATEGORY_COLUMNS}


def _keys(r: LeaderboardRow) -> dict[str, Any]:
    return {"device": r.device, "model": r.model, "variant": r.variant}


def attack_rows(rt: RateTables) -> list[dict[str, Any]]:
    """One row per variant and attack it ran, attacks by name."""
    out = []
    for r in rt.leaderboard:
        if r.attacks is None:
            continue
        for a in r.attacks.attacks:
            out.append({**_keys(r), "harm_rater": rt.attack_rater, **vars(a), "refusal_rater": rt.refusal_rater,
                        "worst": a.attack == r.attacks.worst_attack})
    return [{c: row.get(c) for c in ATTACK_COLUMNS} for row in out]


def summary_rows(rt: RateTables) -> list[dict[str, Any]]:
    """One row per variant that ran an attack: its worst attack and the behaviours broken by any."""
    out = []
    for r in rt.leaderboard:
        u = r.attacks
        if u is None:
            continue
        w = u.worst
        out.append({**_keys(r), "harm_rater": rt.attack_rater, "n_attacks": len(u.attacks),
                    "worst_attack": u.worst_attack, "worst_harm_rate": w.harm_rate if w else None,
                    "worst_harm_ci_low": w.harm_ci_low if w else None,
                    "worst_harm_ci_high": w.harm_ci_high if w else None, "worst_harm_n": w.harm_n if w else None,
                    "broken_n": u.broken_n, "broken_of": u.broken_of, "broken_rate": u.broken_rate,
                    "broken_ci_low": u.broken_ci_low, "broken_ci_high": u.broken_ci_high})
    return out


def category_rows(rt: RateTables) -> list[dict[str, Any]]:
    """One row per variant and category of its harmful prompts (no attack)."""
    return [{**_keys(r), "harm_rater": rt.primary_rater, **vars(c)} for r in rt.leaderboard for c in r.categories]


def attack_tables(rt: RateTables) -> dict[str, list[dict[str, Any]]]:
    """The tables by name; none when no variant ran an attack."""
    if not any(r.attacks is not None for r in rt.leaderboard):
        return {}
    return {"attacks": attack_rows(rt), "attack_summary": summary_rows(rt), "harm_by_category": category_rows(rt)}


def attack_frames(rt: RateTables) -> dict[str, pd.DataFrame]:
    """The same tables as frames, every column kept when a table has no rows."""
    from harness.reporting._data import pandas

    pd_ = pandas()
    frames = {}
    for name, rows in attack_tables(rt).items():
        df = pd_.DataFrame(rows, columns=ATTACK_TABLES[name])
        for col in df.columns:
            if col in COUNT_COLUMNS:
                df[col] = df[col].astype("Int64")  # counts stay whole numbers beside missing ones
        frames[name] = df
    return frames
