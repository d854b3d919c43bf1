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
from harness.reporting._captions import harm_intervals

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
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)  # labels never cut
    return buf.getvalue()


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(model: str, variant: str) -> str:
    return _short(f"{model}:{variant}")


PANELS = (("decode_tps", "front_tps", "decode tokens/s (higher is better)", 1.0),
          ("peak_rss_bytes", "front_ram", "peak RAM, MB (lower is better)", 1e-6))
KEY_GID = "pareto-key"  # the numbers beside the points (the table under the plot says which variant each is)


@plain_text
def pareto_svg(device: str, rows: pd.DataFrame, rater: str) -> str:
    """Two panels for one device: harm vs decode tok/s and harm vs peak RAM, front in red, points numbered
    1..n in the order of `rows` (the page's table under the plot is the key)."""
    return to_svg(pareto_figure(device, rows, rater))


def pareto_figure(device: str, rows: pd.DataFrame, rater: str) -> Any:
    fig = _figure(11, 4.2)
    numbers = {idx: str(i + 1) for i, idx in enumerate(rows.index)}
    placed = [(ax, _pareto_panel(ax, rows, numbers, panel, rater)) for ax, panel in zip(fig.subplots(1, 2), PANELS)]
    fig.suptitle(f"{device}: harm ({rater}) vs cost; {harm_intervals(_methods(rows))}", fontsize=10)
    renderer = _freeze_layout(fig)
    for ax, points in placed:
        place_keys(ax, points, renderer)
    return fig


def _methods(rows: pd.DataFrame) -> list[Any]:
    return list(rows["harm_method"]) if "harm_method" in rows else []


def _pareto_panel(ax: Any, rows: pd.DataFrame, numbers: Mapping[Any, str], panel: tuple[str, str, str, float],
                  rater: str) -> list[tuple[float, float, str]]:
    """Draw one panel; return its points (x, y, number) to be numbered once the layout is fixed."""
    xcol, front_col, xlabel, scale = panel
    sub = rows[[not missing(h) and not missing(x) for h, x in zip(rows["harm_rate"], rows[xcol])]]
    if sub.empty:
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no variant has both a harm rate and\n{xlabel.split(' (')[0]}: nothing to plot",
                ha="center", va="center", transform=ax.transAxes, fontsize=10, color=OTHER_COLOUR)
        return []
    points: list[tuple[float, float, str]] = []
    for on_front, colour, marker, name in ((False, OTHER_COLOUR, "o", "dominated"), (True, FRONT_COLOUR, "D", "Pareto front")):
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
        points += [(xi, yi, numbers[idx]) for xi, yi, idx in zip(x, y, pts.index)]
    front = sub[sub[front_col].astype(bool)].sort_values(xcol)
    if len(front) > 1:
        ax.plot([float(v) * scale for v in front[xcol]], [float(v) * 100 for v in front["harm_rate"]],
                color=FRONT_COLOUR, linewidth=1, linestyle="--",
                drawstyle="steps-post" if xcol == "peak_rss_bytes" else "steps-pre", zorder=1)
    ax.margins(x=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("harm rate on harmful prompts, %")
    ax.set_ylim(bottom=-2, top=max(10.0, ax.get_ylim()[1]))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)  # above the points
    return points


def _freeze_layout(fig: Any) -> Any:
    """Lay the figure out once (constrained layout) and keep it, so label boxes measured now stay where they are."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    fig.set_layout_engine("none")
    return renderer


KEY_RINGS = (9.0, 16.0, 24.0, 33.0, 43.0, 54.0, 66.0)  # offsets in points, tried nearest first
KEY_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
MARKER_PX = 5.0  # half the side of the box a marker covers
KEY_GAP_PX = 4.0  # room kept around a number, so that two numbers never read as one


def place_keys(ax: Any, points: Sequence[tuple[float, float, str]], renderer: Any) -> None:
    """Number each point beside it where its box overlaps no other number, marker or the legend; a number moved
    away from its point gets a thin leader line."""
    from matplotlib.transforms import Bbox

    taken = [Bbox.from_bounds(px - MARKER_PX, py - MARKER_PX, 2 * MARKER_PX, 2 * MARKER_PX)
             for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    for x, y, number in points:
        label = ax.annotate(number, (x, y), textcoords="offset points", xytext=(KEY_RINGS[0], KEY_RINGS[0]),
                            ha="center", va="center", fontsize=8, gid=KEY_GID, zorder=5)
        box, offset = _free_spot(label, taken, renderer)
        taken.append(Bbox.from_extents(box.x0 - KEY_GAP_PX, box.y0 - KEY_GAP_PX, box.x1 + KEY_GAP_PX,
                                       box.y1 + KEY_GAP_PX))
        if max(abs(offset[0]), abs(offset[1])) > KEY_RINGS[0]:
            ax.annotate("", (x, y), xytext=offset, textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": OTHER_COLOUR, "linewidth": 0.5, "shrinkB": 4})


def _free_spot(label: Any, taken: Sequence[Any], renderer: Any) -> tuple[Any, tuple[float, float]]:
    """Move `label` to the nearest offset whose box overlaps nothing taken (the last tried when none is free)."""
    box, offset = None, (0.0, 0.0)
    for ring in KEY_RINGS:
        for dx, dy in KEY_DIRECTIONS:
            offset = (dx * ring, dy * ring)
            label.xyann = offset
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(t) for t in taken):
                return box, offset
    assert box is not None
    return box, offset


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
    ax.set_xlabel(f"harm rate on harmful prompts, % ({rater}); bars are {harm_intervals(_methods(rows))}")
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
