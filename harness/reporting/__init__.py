"""Reports: the HTML page, the Markdown leaderboard, CSV/Parquet tables and the deployable-candidates query.

Public API:
- `write_report(store, out_dir, run_ids=None) -> Path` writes `report.html` (self-contained, opens offline),
  `leaderboard.md` and `tables/*.csv|parquet` into out_dir and returns the HTML file's path.
- `build_report(store, run_ids=None)` computes the same tables without writing anything.
- `deployable_candidates(store, ...)` ranks variants against RAM, speed and harm limits
  (what `harness leaderboard` prints).
- `attack_tables(rate_tables)`: the figures under attack as rows (the tables `attacks`, `attack_summary` and
  `harm_by_category` that a report with attacked generations writes, and `harness export --table` reads).

pandas, pyarrow and matplotlib (the `analysis` extra) are imported only when a report is made.
"""

from __future__ import annotations

from harness.reporting._attack_tables import attack_tables
from harness.reporting._candidates import deployable_candidates
from harness.reporting._report import Report, build_report, write_report

__all__ = ["Report", "attack_tables", "build_report", "deployable_candidates", "write_report"]
