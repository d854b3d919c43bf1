"""Render agreement rows and model harm rankings as rich tables (terminal) and Markdown (study.md).

Pure formatting: rows in, tables or strings out. One line per (a, b, task, category), one column per
metric, each cell "value [ci_low, ci_high]".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness import safetext

METRIC_ORDER = ["rbo", "alpha_ordinal", "alpha_interval", "alpha_nominal", "kendall_tau_b", "spearman",
                "exact_match", "cohen_kappa", "fleiss_kappa"]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def cell(row: dict[str, Any]) -> str:
    text = fmt(row["value"])
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
        text += f" [{fmt(row['ci_low'], 2)}, {fmt(row['ci_high'], 2)}]"
    return text


def pivot(rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(metric columns, one dict per comparison with 'a', 'b', 'task', 'category', 'n' and metric cells)."""
    lines: dict[tuple[Any, ...], dict[str, Any]] = {}
    metrics: set[str] = set()
    for r in rows:
        key = (r["a"], r["b"], r.get("task"), r.get("category"))
        line = lines.setdefault(key, {"a": r["a"], "b": r["b"], "task": r.get("task"),
                                      "category": r.get("category"), "n": r["n"]})
        line["n"] = max(line["n"], r["n"])
        line[r["metric"]] = cell(r)
        metrics.add(r["metric"])
    ordered = [m for m in METRIC_ORDER if m in metrics] + sorted(metrics - set(METRIC_ORDER))
    return ordered, list(lines.values())


def agreement_rich(rows: list[dict[str, Any]], title: str = "agreement") -> Any:
    from rich.table import Table

    metrics, lines = pivot(rows)
    has_cat = any(line["category"] is not None for line in lines)
    table = Table(title=title)
    for col in ["a", "b", "task", *(["category"] if has_cat else []), "n items", *metrics]:
        table.add_column(col)
    for line in lines:
        table.add_row(line["a"], line["b"], line["task"] or "", *([str(line["category"] or "all")] if has_cat else []),
                      str(line["n"]), *(line.get(m, "-") for m in metrics))
    return table


def _md_table(header: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(safetext.markdown(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(safetext.markdown(c) for c in row) + " |" for row in body]
    return "\n".join(out)


def agreement_markdown(rows: list[dict[str, Any]]) -> str:
    metrics, lines = pivot(rows)
    header = ["a", "b", "task", "n items", *metrics]
    body = [[line["a"], line["b"], line["task"] or "", str(line["n"]), *(line.get(m, "-") for m in metrics)]
            for line in lines]
    return _md_table(header, body)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def ranking_tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The model ranking as plain tables: {'models' | 'histogram' | 'pairwise': (header, rows)}."""
    codes = [str(c) for c in result["codes"]]
    models = (["rank", "model", "n", *(f"code {c}" for c in codes), "mean code", "harmful"],
              [[str(m["rank"]), m["label"], str(m["n"]), *(_pct(m["code_shares"][c]) for c in codes),
                fmt(m["mean_code"]), _pct(m["share_harmful"])] for m in result["models"]])
    hist = result["rank_histogram"]
    harm = [c for c in codes if c != "0"]
    histogram = (["model", "n", *(f"ranked {c}" for c in harm)],
                 [[m["label"], str(m["n"]), *(_pct(m["shares"][c]) for c in harm)] for m in hist["models"]])
    pairwise = (["a", "b", "n", "a less harmful", "b less harmful", "ties", "sign test p", "Holm p"],
                [[p["a"], p["b"], str(p["n"]), str(p["a_less_harmful"]), str(p["b_less_harmful"]), str(p["ties"]),
                  fmt(p["p_value"], 4), fmt(p["p_holm"], 4)] for p in result["pairwise"]])
    return {"models": models, "histogram": histogram, "pairwise": pairwise}


def test_line(result: dict[str, Any]) -> str:
    t = result.get("test")
    if not t:
        return "Friedman test: not applicable (needs 3+ models rated on the same items)"
    return (f"Friedman test over {t['n_items']} items x {t['k_models']} models: chi2 = {fmt(t['statistic'])}, "
            f"p = {fmt(t['p_value'], 4)}")


def ranking_rich(result: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    titles = {"models": f"harm by model (rater {result['rater']}, {result['n_items']} items; code 0 = not harmful)",
              "histogram": f"rank histogram over the {result['rank_histogram']['n_items']} items with no N/A",
              "pairwise": "pairwise: how often each model was the less harmful one"}
    out = []
    for key, (header, body) in ranking_tables(result).items():
        table = Table(title=titles[key])
        for h in header:
            table.add_column(h)
        for row in body:
            table.add_row(*(safetext.terminal(c) for c in row))
        out.append(table)
    return out


def ranking_markdown(result: dict[str, Any]) -> str:
    parts = []
    names = {"models": "Harm by model", "histogram": "Rank histogram (items with no N/A)",
             "pairwise": "Pairwise: less harmful"}
    for key, (header, body) in ranking_tables(result).items():
        parts.append(f"### {names[key]}\n\n{_md_table(header, body)}")
    parts.append(test_line(result))
    return "\n\n".join(parts)
