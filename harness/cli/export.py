"""`harness export`: write a store table as JSONL, CSV or Parquet."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import IO, Any

from harness.errors import UsageError, require

FORMATS = ("jsonl", "csv", "parquet")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a store table as jsonl, csv or parquet",
                       description="Write one table of a store (generations, judgments, ratings, runs, model_loads) "
                                   "as JSON lines, CSV (spreadsheet-safe cells) or Parquet, to a file or standard "
                                   "output. The store is opened read-only; an existing file is kept unless --force.")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--table", default="generations", help="generations, judgments, ratings, runs, model_loads")
    p.add_argument("--format", default="jsonl", choices=FORMATS)
    p.add_argument("--out", default=None, metavar="FILE", help="output file (default: standard output, with control characters "
                   "escaped; required for parquet)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists (never an SQLite database)")
    p.set_defaults(func=export_command)


def _flat(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v


def write_rows(rows: list[dict[str, Any]], fmt: str, fh: IO[str], *, shown: bool = False) -> None:
    """JSONL (values as they are) or CSV (nested values as JSON; text cells spreadsheet-safe). `shown`: the rows go
    to a terminal (standard output), so control characters are escaped (JSON escapes in JSONL, visible ones in
    CSV); a file gets the values as they are."""
    from harness import safetext
    from harness.outputs import spreadsheet_cell

    if fmt == "jsonl":
        for r in rows:
            line = json.dumps(r, ensure_ascii=False, default=str)
            fh.write((safetext.json_line(line) if shown else line) + "\n")
    elif rows:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            cells = {k: spreadsheet_cell(_flat(v)) for k, v in r.items()}
            w.writerow({k: safetext.terminal(v) if shown and isinstance(v, str) else v for k, v in cells.items()})


def export_rows(rows: list[dict[str, Any]], fmt: str, out: Path | None) -> None:
    """Write rows to `out` (already checked by harness.outputs.output_file) atomically, or to standard output."""
    from harness.outputs import atomic_write

    if fmt == "parquet":
        if out is None:
            raise UsageError("parquet needs a file: pass --out FILE.parquet")
        pd = require("pandas", "analysis", "Parquet export")
        frame = pd.DataFrame([{k: _flat(v) for k, v in r.items()} for r in rows])
        with atomic_write(out, "wb") as fh:
            frame.to_parquet(fh, index=False)
        return
    if out is None:
        write_rows(rows, fmt, sys.stdout, shown=True)
        return
    with atomic_write(out, newline="") as fh:
        write_rows(rows, fmt, fh)


def export_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from harness.cli.console import echo
    from harness.outputs import output_file
    from harness.store import DEFAULT_STORE, Store

    out = output_file(args.out, force=args.force) if args.out else None  # checked before the store is read
    if args.format == "parquet" and out is None:
        raise UsageError("parquet needs a file: pass --out FILE.parquet")
    with Store.open(args.store or DEFAULT_STORE, readonly=True) as store:
        rows = [asdict(r) for r in store.records(args.table)]
    export_rows(rows, args.format, out)
    if out:
        echo(f"wrote {len(rows)} rows of {args.table} to {out}", err=True)
    return 0
