"""Agreement between raters (people, experts, judges): every metric for every pair, with bootstrap intervals.

`harness agree` is `agreement` with arguments parsed and the rows printed (harness.agreement.metrics says what
each metric is).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import UsageError

AGREEMENT_TASKS = ("rank", "score", "label", "refusal", "pairwise")


def agreement(store: str | Path | None = None, *, raters: Sequence[str] | None = None, task: str | None = None,
              bootstrap: int = 1000, seed: int = 0, by_category: bool = False, rbo_p: float = 0.9,
              rbo_both_empty: float | None = 1.0, rbo_one_empty: float | None = 0.0) -> list[dict[str, Any]]:
    """Rows {a, b, metric, value, ci_low, ci_high, n, task[, category]} for every pair of `raters` (default: all;
    rater:annotator names one annotator). RBO's conventions for empty lists: a value, or None to skip the item.
    The store is opened read-only."""
    from harness.agreement import agreement_table
    from harness.agreement.table import RboOptions
    from harness.api._core import check_bootstrap
    from harness.store import DEFAULT_STORE, Store

    check_bootstrap(bootstrap)
    if task is not None and task not in AGREEMENT_TASKS:
        raise UsageError(f"--task {task!r} is unknown: use one of {', '.join(AGREEMENT_TASKS)}")
    if not 0 < rbo_p < 1:
        raise UsageError(f"--rbo-p {rbo_p} is outside (0, 1): use e.g. --rbo-p 0.9")
    if raters is not None and len(raters) < 2:
        raise UsageError("--raters needs at least two raters separated by commas, e.g. --raters human,gpt4o")
    rbo = RboOptions(p=rbo_p, both_empty=rbo_both_empty, one_empty=rbo_one_empty)
    with Store.open(Path(store) if store else DEFAULT_STORE, readonly=True) as st:
        return agreement_table(st, raters=list(raters) if raters is not None else None, bootstrap=bootstrap,
                               seed=seed, task=task, by_category=by_category, rbo=rbo)
