"""`harness report`: write the HTML report, the Markdown leaderboard and the tables for a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="write report.html, leaderboard.md and tables (CSV, Parquet) for a store",
                       description="Write a self-contained report.html (opens offline), leaderboard.md and the "
                                   "tables as CSV and Parquet into --out.")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: 'report' beside the store)")
    p.add_argument("--run", action="append", default=[], metavar="ID", help="only generations of this run (repeatable)")
    p.add_argument("--judge", default=None, metavar="RATER",
                   help="rater whose harm rates rank the leaderboard (default: the rater with most valid "
                        "ratings; humans on a tie)")
    p.add_argument("--reference", default=None, metavar="VARIANT",
                   help="reference variant of the quantization ladder (default: each model's largest)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for agreement intervals (default 1000)")
    p.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from harness.reporting import write_report
    from harness.store import DEFAULT_STORE, Store

    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    store = Store.open(store_path, create=False)
    try:
        if store.count("generations") == 0 and store.count("ratings") == 0:
            raise UsageError(f"{store_path} has no generations and no ratings: run `harness run --store "
                             f"{store_path}` or import ratings with `harness humans import` first")
        out_dir = Path(args.out) if args.out else store_path.parent / "report"
        path = write_report(store, out_dir, args.run or None, rater=args.judge, reference_variant=args.reference,
                            bootstrap=args.bootstrap)
    finally:
        store.close()
    print(f"report:      {path}")
    print(f"leaderboard: {path.parent / 'leaderboard.md'}")
    print(f"tables:      {path.parent / 'tables'} (CSV and Parquet)")
    return 0
