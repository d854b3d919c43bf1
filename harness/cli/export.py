"""`harness export`: write a store table as JSONL, CSV or Parquet."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError, require

FORMATS = ("jsonl", "csv", "parquet")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a store table as jsonl, csv or parquet")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--table", default="generations", help="generations, judgments, ratings, runs, model_loads")
    p.add_argument("--format", default="jsonl", choices=FORMATS)
    p.add_argument("--out", default=None, metavar="FILE", help="output file (default: standard output; required for parquet)")
    p.set_defaults(func=export_command)


def export_rows(rows: list[dict[str, Any]], fmt: str, out: Path | None) -> None:
    if fmt == "parquet":
        if out is None:
            raise UsageError("parquet needs a file: pass --out FILE.parquet")
        pd = require("pandas", "analysis", "Parquet export")
        frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in rows])
        frame.to_parquet(out, index=False)
        return
    fh = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if fmt == "jsonl":
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        else:
            if not rows:
                return
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    finally:
        if out:
            fh.close()


def export_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from harness.store import DEFAULT_STORE, Store

    with Store.open(args.store or DEFAULT_STORE, readonly=True) as store:
        rows = [asdict(r) for r in store.records(args.table)]
    out = Path(args.out) if args.out else None
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
    export_rows(rows, args.format, out)
    if out:
        print(f"wrote {len(rows)} rows of {args.table} to {out}", file=sys.stderr)
    return 0
