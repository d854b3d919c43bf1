"""Export one table of a store (generations, judgments, ratings, runs, model_loads) as JSON lines, CSV or Parquet;
or one of the figures under attack, computed from the store as the leaderboard computes them (`ATTACK_TABLES`:
attacks, attack_summary, harm_by_category; the report's tables of the same names, harness.reporting).

`harness export` is `export_table` with arguments parsed. The store is opened read-only; a file is written
atomically and never over an existing file unless forced (harness.outputs).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from harness.errors import UsageError, require
from harness.records import TABLES

if TYPE_CHECKING:
    from harness.store import Store

EXPORT_FORMATS = ("jsonl", "csv", "parquet")
ATTACK_TABLES = ("attacks", "attack_summary", "harm_by_category")


@dataclass(frozen=True)
class Export:
    table: str
    rows: int
    out: Path | None  # None: the rows went to the stream


def export_table(store: str | Path | None = None, table: str = "generations", fmt: str = "jsonl",
                 out: str | Path | None = None, *, force: bool = False, stream: IO[str] | None = None) -> Export:
    """Write a store table to the file `out`, or else to `stream` (a terminal's standard output: control characters
    are escaped there, JSON escapes in JSONL and visible ones in CSV). Parquet needs a file. `out` is checked
    before the store is read."""
    from harness.outputs import output_file
    from harness.store import DEFAULT_STORE, Store

    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose from {', '.join(EXPORT_FORMATS)}")
    if table not in TABLES and table not in ATTACK_TABLES:
        raise UsageError(f"unknown table '{table}': tables are {', '.join(TABLES)}, and the figures under attack "
                         f"{', '.join(ATTACK_TABLES)}")
    target = output_file(out, force=force) if out else None
    if fmt == "parquet" and target is None:
        raise UsageError("parquet needs a file: pass --out FILE.parquet")
    if target is None and stream is None:
        raise UsageError("export needs a file (--out) or a stream to write to")
    with Store.open(store or DEFAULT_STORE, readonly=True) as st:
        rows = _attack_table_rows(st, table) if table in ATTACK_TABLES else [asdict(r) for r in st.records(table)]
    _export_rows(rows, fmt, target, stream)
    return Export(table, len(rows), target)


def _attack_table_rows(store: Store, table: str) -> list[dict[str, Any]]:
    """One of the figures under attack (`ATTACK_TABLES`) of every generation in the store, with the leaderboard's
    raters and judge card; no rows when no generation was attacked."""
    from harness.reporting import attack_tables
    from harness.reporting._data import load_inputs

    return attack_tables(load_inputs(store).tables()).get(table, [])


def _flat(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v


def _write_rows(rows: list[dict[str, Any]], fmt: str, fh: IO[str], *, shown: bool = False) -> None:
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


def _export_rows(rows: list[dict[str, Any]], fmt: str, out: Path | None, stream: IO[str] | None = None) -> None:
    """Write rows to `out` (already checked by harness.outputs.output_file) atomically, or to `stream` as shown
    on a terminal."""
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
        assert stream is not None
        _write_rows(rows, fmt, stream, shown=True)
        return
    with atomic_write(out, newline="") as fh:
        _write_rows(rows, fmt, fh)
