"""`leaderboard.md`: the per-device leaderboard as GitHub-flavoured Markdown tables; with attacked generations, the
figures under attack, harm per category and, with several system prompts, the rates per system prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import formatting as f
from harness import safetext
from harness.rates.correction import UNCALIBRATED_NOTE

if TYPE_CHECKING:
    from harness.rates.leaderboard import LeaderboardRow
    from harness.reporting._tables import Tables

COLUMNS = ["#", "model", "variant", "harm (95% CI)", "how", "n rated", "n invalid", "worst category", "refusal",
           "over-refusal", "TTFT s", "decode tok/s [IQR]", "latency p90 s", "peak RAM", "VRAM", "J/token", "size",
           "cost excluded", "Pareto"]


def cell(value: Any) -> str:
    """A Markdown table cell or inline name, shown as it is (harness.safetext.markdown): pipes escaped, newlines
    flattened, control characters escaped, no link, image, emphasis or HTML can come from it."""
    return "" if value is None else safetext.markdown(value)


def front_mark(tps: Any, ram: Any) -> str:
    marks = [name for name, on in (("speed", tps), ("RAM", ram)) if on is True or on == 1]
    return "front: " + ", ".join(marks) if marks else ""


def _other(rates: Any, key: tuple[str, str, str, str]) -> str:
    if rates is None or key not in rates.index:
        return "-"
    x = rates.loc[key]
    return f"{f.rate_ci(x['rate'], x['ci_low'], x['ci_high'])} (n={f.count(x['n_valid'])})"


def _qos_cell(r: dict[str, Any]) -> str:
    if f.missing(r.get("qos_max_gap")):
        return "-"
    if f.missing(r.get("qos_axis")):
        return f"{f.pct(r['qos_max_gap'])} (no gap)"
    return f"{f.pct(r['qos_max_gap'])} {r['qos_axis']} (p={f.pvalue(r['qos_p'])})"


def render(tables: Tables, store_path: str, run_ids: list[str] | None) -> str:
    board = tables.leaderboard
    front = tables.pareto.set_index(["device", "model", "variant"])
    lines = ["# harness leaderboard", ""]
    lines.append(f"Store: {cell(store_path)}; runs: {cell(', '.join(run_ids)) if run_ids else 'all'}.")
    if tables.primary_rater:
        lines.append(f"Harm = the estimated share of harmful outputs on harmful prompts by **{cell(tables.primary_rater)}**"
                     ", 'how' says how it was obtained (human, human-checked: PPI++ from people's labels, calibrated: "
                     "corrected with a judge card, uncalibrated: the judge's raw rate); invalid ratings are excluded "
                     "and counted.")
        methods = {str(m) for m in board["harm_method"].dropna()} if "harm_method" in board else set()
        why = sorted({str(r["harm_note"]).removeprefix("uncalibrated: ") for r in board.to_dict("records")
                      if r.get("harm_method") == "uncalibrated" and not f.missing(r.get("harm_note"))
                      and r["harm_note"] != UNCALIBRATED_NOTE})
        if "uncalibrated" in methods:
            lines.append("")
            lines.append("> **Warning:** rates marked *uncalibrated* are the judge's raw verdicts: "
                         + ("; ".join(why) if why else "nothing measured its errors against people (run `harness "
                                                         "judge calibrate`, or label some outputs)") + ".")
            lines.append("")
        for r in board.to_dict("records"):
            if not f.missing(r.get("harm_judge_warning")):
                lines.append(f"> **Warning ({cell(str(r['model']))}:{cell(str(r['variant']))} on "
                             f"{cell(str(r['device']))}):** {cell(str(r['harm_judge_warning']))}.")
                lines.append("")
    else:
        lines.append("No judgments yet: no harm ratings of outputs on harmful prompts, so the harm columns are "
                     "empty (run `harness judge` or import ratings).")
    if tables.refusal_rater:
        lines.append(f"Refusal = share of **{cell(tables.refusal_rater)}** labels that are refusal or partial "
                     "refusal (a partial refusal counts as a refusal), on harmful prompts; over-refusal = the same "
                     "on benign controls.")
    lines.append("Cost = medians [interquartile range] over the clean measurements of generations without an "
                 "error (warm-up samples and contended measurements left out and counted); peak RAM, VRAM are "
                 "maxima; latency p90 marks the slowest decile.")
    others = sorted(set(tables.harm_rates["rater"]) - {tables.primary_rater}) if len(tables.harm_rates) else []
    rates = tables.harm_rates.set_index(["device", "model", "variant", "rater"]) if others else None
    first = f"harm ({cell(tables.primary_rater)}, 95% CI)" if tables.primary_rater else COLUMNS[3]
    qos = "qos_max_gap" in board and board["qos_max_gap"].notna().any()
    columns = [*COLUMNS[:3], first, *COLUMNS[4:8], *[f"harm ({cell(r)})" for r in others], *COLUMNS[8:10],
               *(["refusal gap (Holm p)"] if qos else []), *COLUMNS[10:]]
    if qos:
        lines.append("Refusal gap = the largest difference in refusal rate between the groups of one axis on "
                     "harmless group-templated requests (quality of service), with its Holm-adjusted permutation "
                     "p-value.")
    if others:
        lines.append("Other raters' harm rates (same definition) follow the worst category.")
    for device, rows in board.groupby("device", sort=True):
        lines += ["", f"## {cell(device)}", "", "| " + " | ".join(columns) + " |",
                  "|" + "|".join("---" if c in ("model", "variant", "worst category", "Pareto") else "---:"
                                 for c in columns) + "|"]
        for r in rows.to_dict("records"):
            key = (r["device"], r["model"], r["variant"])
            fr = front.loc[key] if key in front.index else None
            worst = "-" if f.missing(r["worst_category"]) else \
                f"{r['worst_category']} {f.pct(r['worst_category_rate'])} (n={f.count(r['worst_category_n'])})"
            values = [
                r["rank"], f.model_name(r["model"], r["base_model"]), r["variant"],
                f.rate_ci(r["harm_rate"], r["harm_ci_low"], r["harm_ci_high"]),
                "-" if f.missing(r["harm_method"]) else r["harm_method"],
                f.count(r["harm_n"]), f.count(r["harm_n_invalid"]), worst,
                *[_other(rates, (*key, rater)) for rater in others],
                f.rate_ci(r["refusal_rate"], r["refusal_ci_low"], r["refusal_ci_high"]),
                f.rate_ci(r["over_refusal_rate"], r["over_refusal_ci_low"], r["over_refusal_ci_high"]),
                *([_qos_cell(r)] if qos else []),
                f.num(r["ttft_s"], ".3f"), f.decode_iqr((r["decode_tps"], r["decode_tps_q1"], r["decode_tps_q3"]), (
                    r["contended_decode_tps"], r["contended_decode_tps_q1"], r["contended_decode_tps_q3"])),
                f.num(r["latency_p90_s"], ".2f"),
                f.mb(r["peak_rss_bytes"]), f.mb(r["peak_vram_bytes"]), f.num(r["energy_j_per_token"], ".3f"),
                f.mb(r["size_bytes"]), f.excluded(r["n_contended"], r["n_warmup"]),
                front_mark(fr["front_tps"], fr["front_ram"]) if fr is not None else "",
            ]
            lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    busy = [f.contended_note(f"{r['model']}:{r['variant']} on {r['device']}", r["contended_n_cost"],
                             r["contended_interference_frac"])
            for r in board.to_dict("records") if f.missing(r["decode_tps"]) and not f.missing(r["contended_decode_tps"])]
    lines += ["", *busy] if busy else []
    if len(board) == 0:
        lines += ["", "_No generations in the store for this selection._"]
    lines += under_attack_lines(tables)
    return "\n".join(lines) + "\n"


def _table(columns: list[str], rows: list[list[Any]], left: int = 3) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(columns)))
            + "|", *["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]]


def under_attack_lines(tables: Tables) -> list[str]:
    """The figures under attack, harm per category and the rates per system prompt (only for stores with attacks
    or several system prompts)."""
    rt = tables.rate_tables
    if rt is None:
        return []
    lines: list[str] = []
    if rt.main_system_prompt is not None:
        lines += ["", f"Every figure is under the system prompt \"{cell(rt.main_system_prompt)}\" (no generation went "
                      "without one)."]
    attacked = [r for r in tables.rows if r.attacks is not None]
    if attacked:
        lines += ["", "## Under attack", "",
                  f"Harm under an attack = its attack success rate: the share of harmful outputs by "
                  f"**{cell(rt.attack_rater or '-')}** on the attacked harmful prompts (95% CI), estimated and marked "
                  "('how') as the baseline's; refusal under an attack by **"
                  f"{cell(rt.refusal_rater or '-')}**. The leaderboard's columns above are the no-attack baseline. "
                  "Worst attack: the attack whose 95% upper bound is highest. Broken by any attack: behaviours "
                  "harmful under at least one attack, among those judged under every attack the variant ran.", ""]
        lines += _table(["device", "model:variant", "attack", "harm (95% CI)", "how", "n rated", "refusal (95% CI)",
                         "n labelled"], [row for r in attacked for row in _attack_rows(r)], left=3)
        lines += [""]
        lines += _table(["device", "model:variant", "worst attack", "harm under it (95% CI)", "broken by any attack"],
                        [_worst_row(r) for r in attacked], left=3)
        lines += ["", "## Harm per category", "",
                  f"The no-attack baseline's harm by **{cell(rt.primary_rater or '-')}** per category (the judge's raw "
                  "rate, 95% CI).", ""]
        lines += _table(["device", "model:variant", "category", "harm (95% CI)", "n rated"],
                        [[r.device, r.name, c.category or "-", f.rate_ci(c.rate, c.ci_low, c.ci_high), c.n_valid]
                         for r in tables.rows for c in r.categories], left=3)
    if rt.system_prompts:
        lines += ["", "## System prompts", "", "With no attack, per system prompt: harm (raw, 95% CI) and refusal "
                                               "(95% CI) on harmful prompts.", ""]
        lines += _table(["device", "model:variant", "system prompt", "harm (95% CI)", "refusal (95% CI)", "n"],
                        [[s.device, f"{s.model}:{s.variant}", short_prompt(s.system_prompt),
                          f.rate_ci(s.harm_rate, s.harm_ci_low, s.harm_ci_high),
                          f.rate_ci(s.refusal_rate, s.refusal_ci_low, s.refusal_ci_high), s.n]
                         for s in rt.system_prompts], left=3)
    return lines


def short_prompt(text: str | None, width: int = 60) -> str:
    """A system prompt as a table names it: "none", or its first characters."""
    if text is None:
        return "none"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width] + "..."


def _attack_rows(r: LeaderboardRow) -> list[list[Any]]:
    assert r.attacks is not None
    return [[r.device, r.name, a.attack, f.rate_ci(a.harm_rate, a.harm_ci_low, a.harm_ci_high), a.harm_method or "-",
             f.count(a.harm_n), f.rate_ci(a.refusal_rate, a.refusal_ci_low, a.refusal_ci_high), f.count(a.refusal_n)]
            for a in r.attacks.attacks]


def _worst_row(r: LeaderboardRow) -> list[Any]:
    assert r.attacks is not None
    u, w = r.attacks, r.attacks.worst
    broken = (f"{u.broken_n}/{u.broken_of} {f.rate_ci(u.broken_rate, u.broken_ci_low, u.broken_ci_high)}"
              if u.broken_of else "-")
    return [r.device, r.name, w.attack if w else "-", f.rate_ci(w.harm_rate, w.harm_ci_low, w.harm_ci_high) if w
            else "-", broken]
