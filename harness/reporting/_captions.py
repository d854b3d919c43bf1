"""What each harm interval is, said once for every caption of the report (plots, table notes, definitions).

The interval of a harm rate depends on how the rate was obtained (`LeaderboardRow.harm_method`, see
harness.rates and harness.intervals): a caption names the intervals of the methods its figure shows, never one
name for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable

EXACT = "exact (Clopper-Pearson)"
HARM_INTERVALS = {
    "human": f"{EXACT} for people's rates",
    "uncalibrated": f"{EXACT} for raw judge rates",
    "human-checked": "PPI++ (or the labels' exact interval with few labels) for human-checked rates",
    "calibrated": "exact bounds pushed through the Rogan-Gladen correction for calibrated rates",
}
ORDER = tuple(HARM_INTERVALS)


def harm_intervals(methods: Iterable[object]) -> str:
    """'95% intervals: exact (Clopper-Pearson) for raw judge rates; ...' for the methods shown (all when none)."""
    shown = {str(m) for m in methods if m is not None and str(m) in HARM_INTERVALS} or set(ORDER)
    parts = [HARM_INTERVALS[m] for m in ORDER if m in shown]
    if len(parts) == 1:
        return "95% intervals: " + parts[0].split(" for ")[0]
    return "95% intervals: " + "; ".join(parts)
