"""Agreement between raters (humans, experts, judges) and the model harm ranking from one rater.

Public API (the report and `harness agree` / `harness study` read these; both are pure over
the `ratings` rows, the store is only where the rows come from):

- `agreement_table(store, raters=None, bootstrap=1000, seed=0, task=None, by_category=False)`
  -> list of dicts with keys `a`, `b`, `metric`, `value`, `ci_low`, `ci_high`, `n`, `task`, and
  `category` when `by_category` is set (rows for all items have `category` None). Exactly what
  `harness agree --json` prints. `a == b` marks inter-annotator agreement within one rater.
- `model_harm_ranking(store, rater='human', task='rank')` -> dict: per-model code shares, mean
  code, share harmful, the percentage-rank histogram over items with no N/A, pairwise
  "less harmful" wins with ties, and significance tests (see harness.agreement.ranking).

`store` may be an open `harness.store.Store`, a path to a store file, or an iterable of ratings
rows (dicts with the columns of the `ratings` table).
"""

from __future__ import annotations

from harness.agreement.metrics import METRICS
from harness.agreement.ranking import model_harm_ranking
from harness.agreement.table import agreement_rows, agreement_table

__all__ = ["METRICS", "agreement_rows", "agreement_table", "model_harm_ranking"]
