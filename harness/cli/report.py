"""`harness report`: write the HTML report, the Markdown leaderboard and the tables for a store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="write report.html, leaderboard.md and tables (CSV, Parquet) for a store",
                       description="Write a self-contained report.html (opens offline), leaderboard.md and the "
                                   "tables as CSV and Parquet into --out. The store is opened read-only.")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: 'report' beside the store)")
    p.add_argument("--run", action="append", default=[], metavar="ID", help="only generations of this run (repeatable)")
    p.add_argument("--judge", dest="rater", help=argparse.SUPPRESS)  # the old name of --rater
    p.add_argument("--rater", dest="rater", default=None, metavar="RATER",
                   help="rater whose harm rates rank the leaderboard (default: the rater with most valid "
                        "ratings; humans on a tie)")
    p.add_argument("--card", default=None, metavar="NAME",
                   help="the judge card that corrects harm rates: its set name or the start of its key (see "
                        "`harness judge cards`); default: the card of the rater's judge configuration compared on "
                        "the most outputs")
    p.add_argument("--reference", default=None, metavar="VARIANT",
                   help="reference variant of the quantization ladder (default: each model's largest)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for agreement intervals (default 1000)")
    p.add_argument("--include-flagged", action="store_true",
                   help="count warm-up and contended measurements in the cost medians (left out by default; a "
                        "variant with nothing else shows its contended figures marked)")
    p.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import echo

    r = api.report(args.store, args.out, run_ids=args.run or None, rater=args.rater,
                   reference_variant=args.reference, bootstrap=args.bootstrap, card=args.card,
                   include_flagged=args.include_flagged)
    echo(f"report:      {r.html}")
    echo(f"leaderboard: {r.markdown}")
    echo(f"tables:      {r.tables} (CSV and Parquet)")
    return 0
