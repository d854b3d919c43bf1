"""`harness export`: write a store table as JSONL, CSV or Parquet."""

from __future__ import annotations

import argparse
import sys

from harness.api import EXPORT_FORMATS as FORMATS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a store table as jsonl, csv or parquet",
                       description="Write one table of a store (generations, judgments, ratings, runs, model_loads) "
                                   "as JSON lines, CSV (spreadsheet-safe cells) or Parquet, to a file or standard "
                                   "output. The store is opened read-only; an existing file is kept unless --force.")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--table", default="generations", help="generations, judgments, ratings, runs, model_loads; or "
                   "the figures under attack: attacks, attack_summary, harm_by_category")
    p.add_argument("--format", default="jsonl", choices=FORMATS)
    p.add_argument("--out", default=None, metavar="FILE", help="output file (default: standard output, with control characters "
                   "escaped; required for parquet)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists (never an SQLite database)")
    p.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import echo

    done = api.export_table(args.store, args.table, args.format, args.out, force=args.force, stream=sys.stdout)
    if done.out:
        echo(f"wrote {done.rows} rows of {done.table} to {done.out}", err=True)
    return 0
