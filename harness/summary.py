"""The terminal table printed at the end of a run: one row per device x model x variant."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.store import Store


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def variant_rows(store: Store, sample_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """Cost aggregates per device x model x variant over the given samples (all if None)."""
    where, params = "", []
    if sample_keys is not None:
        store.conn.execute("CREATE TEMP TABLE IF NOT EXISTS _keys (k TEXT PRIMARY KEY)")
        store.conn.execute("DELETE FROM _keys")
        store.conn.executemany("INSERT OR IGNORE INTO _keys VALUES (?)", [(k,) for k in sample_keys])
        where = "sample_key IN (SELECT k FROM _keys)"
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in store.rows("generations", where, params):
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


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_run_table(store: Store, sample_keys: list[str] | None, console: Console) -> None:
    rows = variant_rows(store, sample_keys)
    table = Table(title="cost per variant (medians; peak RSS is the maximum)")
    for col in ("device", "model", "variant", "n", "size MB", "TTFT s", "prompt tok/s", "decode tok/s",
                "latency s", "peak RSS MB", "J/token", "of BW bound", "errors"):
        table.add_column(col, justify="left" if col in ("device", "model", "variant") else "right")
    for r in rows:
        table.add_row(
            r["device"], r["model"], r["variant"], str(r["n"]),
            _fmt(r["size_bytes"] and r["size_bytes"] / 1e6, ".0f"), _fmt(r["ttft_s"], ".3f"),
            _fmt(r["prompt_tps"], ".0f"), _fmt(r["decode_tps"], ".1f"), _fmt(r["latency_s"], ".2f"),
            _fmt(r["peak_rss_bytes"] and r["peak_rss_bytes"] / 1e6, ".0f"), _fmt(r["energy_j_per_token"], ".3f"),
            _fmt(r["bandwidth_fraction"], ".0%"), str(r["errors"]),
        )
    console.print(table)
