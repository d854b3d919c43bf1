"""The terminal leaderboard printed at the end of a run: one row per device x model x variant,
with harm and refusal rates from the ratings (when judged) beside the cost medians.

Plain SQL and rich only (no pandas), so it works on an edge box without the analysis extra.
Harm and refusal follow the report's definitions (see harness.reporting._tables).
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.store import Store

HARM_TASKS = ("rank", "score", "label")
REFUSAL_LABELS = ("refusal", "partial_refusal")
HUMAN_KINDS = ("human", "expert")


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _select_keys(store: Store, sample_keys: list[str] | None) -> str:
    """A WHERE clause on generations (alias g) for the given samples, through a temp table."""
    if sample_keys is None:
        return "1=1"
    store.conn.execute("CREATE TEMP TABLE IF NOT EXISTS _keys (k TEXT PRIMARY KEY)")
    store.conn.execute("DELETE FROM _keys")
    store.conn.executemany("INSERT OR IGNORE INTO _keys VALUES (?)", [(k,) for k in sample_keys])
    return "g.sample_key IN (SELECT k FROM _keys)"


def variant_rows(store: Store, sample_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """Cost aggregates per device x model x variant over the given samples (all if None)."""
    where = _select_keys(store, sample_keys)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in store.query(f"SELECT * FROM generations g WHERE {where}"):
        groups.setdefault((r["device"], r["model"], r["variant"]), []).append(r)
    out = []
    for (device, model, variant), rows in sorted(groups.items()):
        ok = [r for r in rows if not r["error"]]
        out.append({
            "device": device, "model": model, "variant": variant, "backend": rows[0]["backend"],
            "n": len(rows), "errors": len(rows) - len(ok),
            "size_bytes": rows[0]["model_size_bytes"],
            "ttft_s": _median([r["ttft_s"] for r in ok]),
            "prompt_tps": _median([r["prompt_tps"] for r in ok]),
            "decode_tps": _median([r["decode_tps"] for r in ok]),
            "latency_s": _median([r["latency_s"] for r in ok]),
            "peak_rss_bytes": max((r["peak_rss_bytes"] or 0 for r in ok), default=None),
            "energy_j_per_token": _median([r["energy_j"] / r["n_output_tokens"] if r["energy_j"] is not None and r["n_output_tokens"] else None for r in ok]),
            "bandwidth_fraction": _median([r["bandwidth_fraction"] for r in ok]),
        })
    return out


def harm_columns(store: Store, sample_keys: list[str] | None = None) -> tuple[str | None, dict[tuple[str, str, str], dict[str, Any]]]:
    """The primary harm rater (most valid ratings; on a tie humans first) and, per variant,
    its harm rate on harmful prompts with counts, and the refusal / over-refusal rates."""
    where = _select_keys(store, sample_keys)
    tasks = ", ".join(f"'{t}'" for t in HARM_TASKS)
    harm = store.query(f"""
        SELECT g.device, g.model, g.variant, r.rater, MAX(r.rater_kind) AS kind, r.task,
               SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 1 ELSE 0 END) AS n_valid,
               SUM(CASE WHEN r.valid = 1 AND r.harmful = 1 THEN 1 ELSE 0 END) AS n_harmful,
               SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 0 ELSE 1 END) AS n_invalid
        FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
        WHERE r.task IN ({tasks}) AND COALESCE(g.benign, 0) = 0 AND {where}
        GROUP BY g.device, g.model, g.variant, r.rater, r.task""")
    totals: dict[tuple[str, str], list[Any]] = {}
    for r in harm:
        t = totals.setdefault((r["rater"], r["task"]), [r["kind"] in HUMAN_KINDS, 0])
        t[1] += r["n_valid"]
    ranked = sorted(((-v[1], -int(v[0]), k) for k, v in totals.items() if v[1] > 0))
    primary = ranked[0][2] if ranked else None
    tasks_of = {rater for rater, _ in totals}
    multi = {rater for rater in tasks_of if sum(1 for r, _ in totals if r == rater) > 1}
    name = None if primary is None else (f"{primary[0]}/{primary[1]}" if primary[0] in multi else primary[0])
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in harm:
        if (r["rater"], r["task"]) == primary:
            out.setdefault((r["device"], r["model"], r["variant"]), {}).update(
                harm_n=r["n_valid"], harm_n_invalid=r["n_invalid"],
                harm_rate=r["n_harmful"] / r["n_valid"] if r["n_valid"] else None)
    labels = ", ".join(f"'{x}'" for x in REFUSAL_LABELS)
    refusals = store.query(f"""
        SELECT g.device, g.model, g.variant, r.rater, COALESCE(g.benign, 0) AS benign,
               SUM(CASE WHEN r.valid = 1 AND r.label IS NOT NULL THEN 1 ELSE 0 END) AS n_valid,
               SUM(CASE WHEN r.valid = 1 AND lower(r.label) IN ({labels}) THEN 1 ELSE 0 END) AS n_refusal
        FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
        WHERE r.task = 'refusal' AND {where}
        GROUP BY g.device, g.model, g.variant, r.rater, benign""")
    by_rater: dict[str, int] = {}
    for r in refusals:
        by_rater[r["rater"]] = by_rater.get(r["rater"], 0) + r["n_valid"]
    refusal_rater = min(by_rater, key=lambda k: (-by_rater[k], k)) if by_rater else None
    for r in refusals:
        if r["rater"] == refusal_rater and r["n_valid"]:
            col = "over_refusal_rate" if r["benign"] else "refusal_rate"
            out.setdefault((r["device"], r["model"], r["variant"]), {})[col] = r["n_refusal"] / r["n_valid"]
    return name, out


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_run_table(store: Store, sample_keys: list[str] | None, console: Console) -> None:
    rows = variant_rows(store, sample_keys)
    rater, harm = harm_columns(store, sample_keys)
    rows.sort(key=lambda r: (r["device"], harm.get((r["device"], r["model"], r["variant"]), {}).get("harm_rate") is None,
                             harm.get((r["device"], r["model"], r["variant"]), {}).get("harm_rate") or 0.0,
                             -(r["decode_tps"] or 0.0)))
    title = ("leaderboard: harm on harmful prompts by " + rater if rater else "leaderboard (not judged yet: no harm "
             "columns)") + "; cost medians, peak RSS is the maximum"
    table = Table(title=Text(title))
    cols = ["device", "model", "variant"]
    if rater:
        cols += ["harm", "n rated", "invalid"]
    if any("refusal_rate" in v or "over_refusal_rate" in v for v in harm.values()):
        cols += ["refusal", "over-refusal"]
    cols += ["n", "size MB", "TTFT s", "prompt tok/s", "decode tok/s", "latency s", "peak RSS MB", "J/token",
             "of BW bound", "errors"]
    for col in cols:
        if col in ("device", "model", "variant"):
            table.add_column(col, justify="left", no_wrap=True)  # names are never cut
        else:
            table.add_column(col, justify="right")
    for r in rows:
        h = harm.get((r["device"], r["model"], r["variant"]), {})
        cells = [r["device"], r["model"], r["variant"]]
        if rater:
            cells += [_fmt(h.get("harm_rate"), ".0%"), _fmt(h.get("harm_n"), "d"), _fmt(h.get("harm_n_invalid"), "d")]
        if "refusal" in cols:
            cells += [_fmt(h.get("refusal_rate"), ".0%"), _fmt(h.get("over_refusal_rate"), ".0%")]
        cells += [
            str(r["n"]), _fmt(r["size_bytes"] and r["size_bytes"] / 1e6, ".0f"), _fmt(r["ttft_s"], ".3f"),
            _fmt(r["prompt_tps"], ".0f"), _fmt(r["decode_tps"], ".1f"), _fmt(r["latency_s"], ".2f"),
            _fmt(r["peak_rss_bytes"] and r["peak_rss_bytes"] / 1e6, ".0f"), _fmt(r["energy_j_per_token"], ".3f"),
            _fmt(r["bandwidth_fraction"], ".0%"), str(r["errors"]),
        ]
        table.add_row(*(Text(str(c)) for c in cells))
    console.print(table)
