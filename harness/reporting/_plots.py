"""The report's plots, drawn with matplotlib (no pyplot, no global state) and returned as SVG text.

Text in the SVG is drawn as paths (matplotlib's default `svg.fonttype`), so labels that come from the
store cannot inject markup; the page embeds each SVG as a base64 `data:` image, which never runs script.
Every plot is drawn under `@plain_text`: names from the store are text, never mathtext (`m$\\bogus$`
would otherwise be parsed as TeX, and crash the report).
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import require
from harness.formatting import missing

if TYPE_CHECKING:
    import pandas as pd

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "#7f7f7f"
BAR_COLOUR = "#1f77b4"


F = TypeVar("F", bound=Callable[..., Any])


def plain_text(draw: F) -> F:
    """Draw (and save) a plot with mathtext off, so every label is shown as the text it is."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require("matplotlib", "analysis", "drawing report plots")
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _figure(width_in: float, height_in: float) -> Any:
    require("matplotlib", "analysis", "drawing report plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def to_svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(model: str, variant: str) -> str:
    return _short(f"{model}:{variant}")


@plain_text
def pareto_svg(device: str, rows: pd.DataFrame, rater: str) -> str:
    """Two panels for one device: harm vs decode tok/s and harm vs peak RAM, front in red."""
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2)
    panels = (("decode_tps", "front_tps", "decode tokens/s (higher is better)", 1.0),
              ("peak_rss_bytes", "front_ram", "peak RAM, MB (lower is better)", 1e-6))
    for ax, (xcol, front_col, xlabel, scale) in zip(axes, panels):
        sub = rows[[not missing(h) and not missing(x) for h, x in zip(rows["harm_rate"], rows[xcol])]]
        for on_front, colour, marker, name in ((False, OTHER_COLOUR, "o", "dominated"),
                                               (True, FRONT_COLOUR, "D", "Pareto front")):
            pts = sub[sub[front_col] == on_front]
            if pts.empty:
                continue
            x = [float(v) * scale for v in pts[xcol]]
            y = [float(v) * 100 for v in pts["harm_rate"]]
            lo = [max(0.0, (float(h) - float(low)) * 100) if not missing(low) else 0.0
                  for h, low in zip(pts["harm_rate"], pts["harm_ci_low"])]
            hi = [max(0.0, (float(u) - float(h)) * 100) if not missing(u) else 0.0
                  for h, u in zip(pts["harm_rate"], pts["harm_ci_high"])]
            ax.errorbar(x, y, yerr=[lo, hi], fmt=marker, color=colour, ecolor=colour, alpha=0.9, capsize=3,
                        markersize=8 if on_front else 6, label=name, zorder=3 if on_front else 2)
            if not on_front and len(sub) > 6:
                continue  # a crowded plot labels only the front; the table below names every point
            for xi, yi, m, v in zip(x, y, pts["model"], pts["variant"]):
                ax.annotate(_label(str(m), str(v)), (xi, yi), textcoords="offset points", xytext=(6, 6), fontsize=8)
        front = sub[sub[front_col]].copy()
        if len(front) > 1:
            front = front.sort_values(xcol)
            ax.plot([float(v) * scale for v in front[xcol]], [float(v) * 100 for v in front["harm_rate"]],
                    color=FRONT_COLOUR, linewidth=1, linestyle="--", drawstyle="steps-post" if xcol == "peak_rss_bytes"
                    else "steps-pre", zorder=1)
        ax.margins(x=0.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"harm rate on harmful prompts, % ({rater})")
        ax.set_ylim(bottom=-2, top=max(10.0, ax.get_ylim()[1]))
        ax.grid(True, alpha=0.3)
        if sub.empty:
            ax.text(0.5, 0.5, "no variant has both a harm rate and this cost", ha="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{device}: harm vs cost (95% Wilson intervals)", fontsize=11)
    return to_svg(fig)


@plain_text
def harm_bars_svg(device: str, rows: pd.DataFrame, rater: str) -> str:
    """Horizontal bars: harm rate per variant with its interval, lowest first."""
    rows = rows[[not missing(v) for v in rows["harm_rate"]]]
    fig = _figure(11, max(1.6, 0.38 * len(rows) + 1.0))
    ax = fig.subplots()
    labels = [_label(str(m), str(v)) for m, v in zip(rows["model"], rows["variant"])]
    y = list(range(len(rows)))[::-1]
    rate = [float(v) * 100 for v in rows["harm_rate"]]
    lo = [max(0.0, r - float(v) * 100) if not missing(v) else 0.0 for r, v in zip(rate, rows["harm_ci_low"])]
    hi = [max(0.0, float(v) * 100 - r) if not missing(v) else 0.0 for r, v in zip(rate, rows["harm_ci_high"])]
    ax.barh(y, rate, xerr=[lo, hi], color=BAR_COLOUR, alpha=0.85, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"harm rate on harmful prompts, % ({rater}); bars are 95% Wilson intervals")
    ax.set_title(f"{device}: harm rate by variant", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    return to_svg(fig)


@plain_text
def rank_histogram_svg(histogram: Mapping[str, Sequence[float]], title: str) -> str:
    """Grouped bars: for each model, the share of items where it got each rank (1 = least harmful)."""
    fig = _figure(7.5, 3.6)
    ax = fig.subplots()
    models = list(histogram)
    n_ranks = max((len(v) for v in histogram.values()), default=0)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        shares = [float(s) * 100 for s in histogram[model]]
        ax.bar([k + 1 + (i - (len(models) - 1) / 2) * width for k in range(len(shares))], shares, width=width,
               label=_short(model))
    ax.set_xticks(range(1, n_ranks + 1), [f"rank {k}" for k in range(1, n_ranks + 1)])
    ax.set_ylabel("% of items")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return to_svg(fig)


@plain_text
def pairwise_wins_svg(models: Sequence[str], wins: Sequence[Sequence[float | None]], title: str) -> str:
    """Heatmap: cell (row, column) = share of items where the row model was less harmful than the column model."""
    fig = _figure(6.5, 5.0)
    ax = fig.subplots()
    data = [[float("nan") if v is None or missing(v) else float(v) * 100 for v in row] for row in wins]
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=100)
    names = [_short(m, 28) for m in models]
    ax.set_xticks(range(len(models)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), names, fontsize=8)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.0f}%", ha="center", va="center", fontsize=9,
                        color="white" if v > 60 else "black")
    ax.set_xlabel("... than this model")
    ax.set_ylabel("this model was less harmful ...")
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, label="% of items")
    return to_svg(fig)


@plain_text
def qos_svg(title: str, axes_groups: Sequence[tuple[str, Sequence[tuple[str, float, float, float, int]]]]) -> str:
    """A dot plot of one variant and measure: per axis (largest gap first; its name and gap on a header line),
    each group's rate with its 95% interval. `axes_groups`: [(axis label, [(group, rate, ci_low, ci_high, n)])]."""
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    ticks: list[tuple[float, str, bool]] = []  # (y, label, is a header)
    dots: list[tuple[float, float, float, float, str]] = []
    y = 0.0
    for i, (axis, groups) in enumerate(axes_groups):
        colour = palette[i % len(palette)]
        ticks.append((y, _short(axis, 60), True))
        y += 1.0
        for g, rate, lo, hi, n in groups:
            ticks.append((y, _short(f"{g} (n={n})", 40), False))
            dots.append((y, rate, lo, hi, colour))
            y += 1.0
        y += 0.4
    fig = _figure(8.5, max(1.6, 0.2 * y + 0.9))
    ax = fig.subplots()
    for y_pos, rate, lo, hi, colour in dots:
        ax.plot([lo, hi], [y_pos, y_pos], color=colour, linewidth=2, alpha=0.55)
        ax.plot([rate], [y_pos], "o", color=colour, markersize=4.5)
    ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=7.5)
    for label, (_, _, header) in zip(ax.get_yticklabels(), ticks):
        if header:
            label.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("rate with 95% Wilson interval")
    ax.set_title(_short(title, 90), fontsize=10)
    ax.grid(axis="x", color="#eeeeee")
    return to_svg(fig)
