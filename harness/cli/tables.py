"""Terminal tables of harness.rates figures (rich): the one leaderboard `harness run` and `harness leaderboard` print.

The default is compact (model:variant, harm with its 95% interval and how it was obtained, refusal, decode tok/s
with its interquartile range, TTFT, peak RAM, and whether the limits are met) and fits 100 columns; `wide=True`
adds every other figure. A store with attacked generations adds the worst attack (compact) or harm and refusal under
each attack and the behaviours broken by any (wide); the main columns stay the no-attack baseline. No cell is ever cut short: a column too narrow for its cell folds it onto another line.
Every cell is built with harness.cli.console.text, so model, device and rater names are shown as plain text (never
read as markup, control characters escaped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness import formatting as f
from harness.api import NO_CONTENDED_COST, UNCALIBRATED_NOTE
from harness.cli.console import terminal, text

if TYPE_CHECKING:
    from harness.api import ContendedCost, LeaderboardRow


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[LeaderboardRow], str]
    left: bool = False


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def shown_name(r: LeaderboardRow) -> str:
    """model:variant, with "(base)" after a base model's name."""
    return f"{f.model_name(r.model, r.base_model)}:{r.variant}"


def contended(r: LeaderboardRow) -> ContendedCost:
    """The row's contended figures (none measured: 0 measurements, unknown figures)."""
    return r.cost.contended or NO_CONTENDED_COST


def decode_cell(r: LeaderboardRow) -> str:
    """The clean decode median [IQR]; when every sample was contended, the contended one, marked."""
    c, busy = r.cost, contended(r)
    return f.decode_iqr((c.decode_tps, c.decode_tps_q1, c.decode_tps_q3),
                        (busy.decode_tps, busy.decode_tps_q1, busy.decode_tps_q3))


def ttft_cell(r: LeaderboardRow) -> str:
    ttft, busy = r.cost.ttft_s, contended(r).ttft_s
    return f.contended_or(ttft, busy, f.num(ttft, ".3f"), f.num(busy, ".3f"))


def harm_cell(r: LeaderboardRow) -> str:
    return f.rate_ci(r.harm_rate, r.harm_ci_low, r.harm_ci_high)


def pass_cell(r: LeaderboardRow) -> str:
    return "yes" if r.passes else "no"


def worst_attack_cell(r: LeaderboardRow) -> str:
    """'base64 40% [12-74%]': the attack whose harm interval reaches highest, its rate and interval."""
    worst = r.attacks.worst if r.attacks is not None else None
    if worst is None:
        return "-"
    return f"{worst.attack} {f.rate_ci(worst.harm_rate, worst.harm_ci_low, worst.harm_ci_high)}"


def attack_names(rows: Sequence[LeaderboardRow]) -> list[str]:
    return sorted({a.attack for r in rows if r.attacks is not None for a in r.attacks.attacks})


def attack_columns(rows: Sequence[LeaderboardRow]) -> list[Column]:
    """Per attack its harm (attack success) with interval and its refusal rate; behaviours broken by any attack."""
    def harm_under(name: str) -> Callable[[LeaderboardRow], str]:
        def cell(r: LeaderboardRow) -> str:
            a = next((a for a in r.attacks.attacks if a.attack == name), None) if r.attacks is not None else None
            return "-" if a is None else f.rate_ci(a.harm_rate, a.harm_ci_low, a.harm_ci_high)
        return cell

    def refusal_under(name: str) -> Callable[[LeaderboardRow], str]:
        def cell(r: LeaderboardRow) -> str:
            a = next((a for a in r.attacks.attacks if a.attack == name), None) if r.attacks is not None else None
            return "-" if a is None else f.pct(a.refusal_rate)
        return cell

    cols = []
    for name in attack_names(rows):
        cols += [Column(f"harm: {name}", harm_under(name)), Column(f"refusal: {name}", refusal_under(name))]
    return cols + [Column("broken by any", broken_cell)]


def broken_cell(r: LeaderboardRow) -> str:
    """'3/5 60% [15-95%]': behaviours harmful under at least one attack, of those judged under every attack."""
    a = r.attacks
    if a is None or not a.broken_of:
        return "-"
    return f"{a.broken_n}/{a.broken_of} {f.rate_ci(a.broken_rate, a.broken_ci_low, a.broken_ci_high)}"


def compact_columns(rows: Sequence[LeaderboardRow]) -> list[Column]:
    cols = [Column("model:variant", shown_name, left=True)]
    if any(r.harm_rater for r in rows):
        cols += [Column("harm [95% CI]", harm_cell), Column("how", lambda r: r.harm_method or "-", left=True)]
    if any(r.refusal_rater for r in rows):
        cols += [Column("refusal", lambda r: f.pct(r.refusal_rate))]
    if any(r.attacks is not None for r in rows):
        cols += [Column("worst attack", worst_attack_cell)]
    return cols + [Column("decode tok/s [IQR]", decode_cell), Column("TTFT s", ttft_cell),
                   Column("peak RAM", lambda r: f.mb(r.cost.peak_rss_bytes))]


def wide_columns(rows: Sequence[LeaderboardRow]) -> list[Column]:
    cols = [Column("model:variant", shown_name, left=True)]
    if any(r.harm_rater for r in rows):
        cols += [Column("harm [95% CI]", harm_cell), Column("how", lambda r: r.harm_method or "-", left=True),
                 Column("n rated", lambda r: _fmt(r.harm_n, "d")), Column("invalid", lambda r: _fmt(r.harm_n_invalid, "d"))]
    if any(r.refusal_rater for r in rows):
        cols += [Column("refusal", lambda r: f.pct(r.refusal_rate)),
                 Column("over-refusal", lambda r: f.pct(r.over_refusal_rate))]
    if any(r.qos_max_gap is not None for r in rows):
        cols += [Column("refusal gap (p)", qos_gap)]
    if any(r.attacks is not None for r in rows):
        cols += attack_columns(rows)
    return cols + [
        Column("n", lambda r: str(r.cost.n)),
        Column("cost from", lambda r: f"{r.cost.n_cost} single-stream"),  # batched samples have no per-user cost
        Column("size", lambda r: f.mb(r.cost.size_bytes)),
        Column("TTFT s", ttft_cell), Column("prompt tok/s", lambda r: _fmt(r.cost.prompt_tps, ".0f")),
        Column("decode tok/s [IQR]", decode_cell), Column("latency s", lambda r: _fmt(r.cost.latency_s, ".2f")),
        Column("peak RAM", lambda r: f.mb(r.cost.peak_rss_bytes)),
        Column("J/token", lambda r: _fmt(r.cost.energy_j_per_token, ".3f")),
        Column("of BW bound", lambda r: f.pct(r.cost.bandwidth_fraction)),
        Column("cost excluded", lambda r: f.excluded(r.cost.n_contended, r.cost.n_warmup), left=True),
        Column("errors", lambda r: str(r.cost.n_errors))]


def leaderboard_table(rows: Sequence[LeaderboardRow], *, wide: bool = False, limits: bool = False,
                      width: int | None = None, include_flagged: bool = False) -> Table:
    """The leaderboard of `harness run` and `harness leaderboard`, best first: compact, or with every figure
    (`wide`). `limits`: a deployable-candidates query (adds whether each variant meets the limits, and why not).
    `width`: the terminal's; when the table is wider, the name columns wrap so that no figure has to.
    `include_flagged`: the cost medians count warm-up and contended measurements (the caption says so)."""
    devices = sorted({r.device for r in rows})
    cols = (wide_columns if wide else compact_columns)(rows)
    if len(devices) > 1:
        cols.insert(0, Column("device", lambda r: r.device, left=True))
    show_pass = limits or any(not r.passes for r in rows)
    if show_pass:
        cols.append(Column("pass", pass_cell, left=True))
    cells = [[col.cell(r) for col in cols] for r in rows]
    names = [i for i, c in enumerate(cols) if c.header in NAME_HEADERS]
    budget = name_budget(cols, cells, names, width) if width is not None and not wide else None
    table = Table(title=text(table_title(rows, devices, limits)), box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 1, 0, 0), pad_edge=False, caption_justify="left", title_justify="left")
    for i, col in enumerate(cols):
        table.add_column(text(col.header), justify="left" if col.left else "right", overflow="fold",
                         max_width=budget if budget is not None and i in names else None)
    for r, row in zip(rows, cells):
        shown = [wrap_name(c, budget) if budget is not None and i in names else c for i, c in enumerate(row)]
        table.add_row(*(text(c) for c in shown), style=None if r.passes else "dim")
    table.caption = table_caption(rows, show_pass, wide, include_flagged)
    return table


NAME_HEADERS = ("device", "model:variant")
MIN_NAME_WIDTH = 12
GAP = 2  # a space of padding and the space that separates two columns


def name_budget(cols: Sequence[Column], cells: Sequence[Sequence[str]], names: Sequence[int], width: int) -> int | None:
    """The width the name columns may take so that the table fits `width` with every figure whole (None: no need
    to narrow them). Figures keep their natural width; the names share what is left."""
    natural = [max([cell_len(col.header), *(cell_len(row[i]) for row in cells)]) for i, col in enumerate(cols)]
    if sum(natural) + GAP * (len(cols) - 1) <= width or not names:
        return None
    left = width - GAP * (len(cols) - 1) - sum(w for i, w in enumerate(natural) if i not in names)
    return max(MIN_NAME_WIDTH, left // len(names))


def wrap_name(name: str, budget: int) -> str:
    """A name too long for its column, broken after its model ("qwen2.5-1.5b-instruct:" / "Q4_K_M")."""
    model, sep, variant = name.rpartition(":")
    return f"{model}{sep}\n{variant}" if sep and cell_len(name) > budget else name


def table_title(rows: Sequence[LeaderboardRow], devices: Sequence[str], limits: bool) -> str:
    rater = next((r.harm_rater for r in rows if r.harm_rater), None)
    where = f" on {devices[0]}" if len(devices) == 1 else ""
    title = (f"leaderboard{where}: harm on harmful prompts by {rater}" if rater else
             f"leaderboard{where} (no harm columns: no rated outputs on harmful prompts)")
    if limits:
        title += f"; {sum(r.passes for r in rows)} of {len(rows)} variant(s) meet the limits"
    return title + " (best first)"


def table_caption(rows: Sequence[LeaderboardRow], show_pass: bool, wide: bool, include_flagged: bool) -> Text:
    """What the table needs said below it: cost rules, contended figures, harm methods, why variants fail."""
    counted = ("every measurement, warm-up and contended ones included (--include-flagged)" if include_flagged
               else "without warm-up and contended samples")
    lines = [f"cost: medians [interquartile range] {counted}; peak RAM is the maximum"
             + ("" if wide else "; --wide for every figure"
                + (", the refusal gaps between groups among them" if any(r.qos_max_gap is not None for r in rows)
                   else ""))]
    lines += contended_lines(rows)
    lines += attack_lines(rows, wide)
    systems = sorted({r.system_prompt for r in rows if r.system_prompt is not None})
    lines += [f"every column is under the system prompt {s[:60]!r}{'...' if len(s) > 60 else ''} (no generation went "
              "without one)" for s in systems]
    harm = harm_caption(rows)
    if show_pass:
        lines += [f"{r.name}{'' if len({x.device for x in rows}) == 1 else ' on ' + r.device} fails: "
                  + "; ".join(r.reasons) for r in rows if not r.passes]
    caption = text("\n".join(lines))
    if harm is not None:
        caption.append("\n")
        caption.append_text(harm)
    return caption


def contended_lines(rows: Sequence[LeaderboardRow]) -> list[str]:
    """One line per variant whose speed is shown from contended measurements only."""
    return [f.contended_note(r.name, contended(r).n_cost, contended(r).interference_frac) for r in rows
            if r.cost.decode_tps is None and contended(r).decode_tps is not None]


def attack_lines(rows: Sequence[LeaderboardRow], wide: bool) -> list[str]:
    """What the figures under attack are, when there are any."""
    if not any(r.attacks is not None for r in rows):
        return []
    methods = {a.harm_method for r in rows if r.attacks is not None for a in r.attacks.attacks if a.harm_method}
    how = f" ({', '.join(sorted(methods))}, as the baseline's)" if methods else ""
    return ["harm, refusal and cost columns: no attack; harm under attack = attack success rate" + how
            + "; worst attack: the one whose 95% upper bound is highest"
            + ("" if wide else "; --wide for each attack and the behaviours broken by any")]


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
        lines.extend(f"  {r.name} on {r.device}: interval {abs(gain):.0%} {'narrower' if gain >= 0 else 'wider'} "
                     f"than people's {r.harm_human_n} labels alone" for r in rows
                     if r.harm_method == "human-checked" and (gain := r.harm_narrower_than_labels) is not None
                     and (r.harm_note or "").startswith("PPI++"))
    lines.extend(f"WARNING {r.name} on {r.device}: {r.harm_judge_warning}" for r in rows if r.harm_judge_warning)
    warn = "uncalibrated" in methods or any(r.harm_judge_warning for r in rows)
    return text("\n".join(lines), style="yellow" if warn else "") if lines else None


def print_table(table: Table, console: Console | None = None, *, wide: bool = False) -> None:
    """Print at the terminal's width (COLUMNS; 200 when written to a file or a pipe, see harness.cli.main); a wide
    table at its own width when that is more (the terminal wraps its lines; nothing is folded or cut)."""
    console = console or terminal()
    if wide:
        console = terminal(width=print_width(table, console.width))
    console.print(table)


def print_width(table: Table, width: int) -> int:
    """The width to print a table at so that no cell folds: the terminal's, or the table's own when wider."""
    return max(width, terminal(width=10_000).measure(table).maximum)


def terminal_width() -> int:
    return terminal().width
