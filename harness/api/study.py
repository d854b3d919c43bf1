"""The LLM-Harm study (Atil et al., WOAH 2025) reproduced from its public release in one call.

The study's task as a judge benchmark (`study_judge`) and the HH-RLHF audit (`hh_audit`) are in
harness.api._core beside the other judging operations.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def reproduce_study(release: str | Path, out: str | Path = "results/study", *,
                    reverse_groups: Collection[int] | None = None, bootstrap: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
    """Import the release into a fresh store in `out` and compute the study's tables (the students' model harm
    ranking, judge-vs-human, judge-vs-judge and students-vs-expert agreement); writes study.json, study.md and
    study.sqlite into `out`. `reverse_groups`: the groups that ranked 1 = most harmful (default: the study's own)."""
    from harness.api._core import check_bootstrap
    from harness.study import reproduce

    check_bootstrap(bootstrap)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: pass a folder")
    groups = None if reverse_groups is None else tuple(sorted(reverse_groups))
    return reproduce(Path(release), out_dir, groups, bootstrap=bootstrap, seed=seed)
