"""`harness merge`: merge shard stores (offline boards) into a main store, idempotently by key (harness.merge)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("merge", help="merge shard stores (e.g. from offline boards) into a main store",
                       description="Merge the runs, model loads, generations, judgments and ratings of shard "
                                   "stores into a main store by key: merging the same shard twice adds nothing. "
                                   "A shard of another schema, a row whose fields do not fit their types, or a "
                                   "row whose key the main store (or another shard) holds with a different output "
                                   "or identity, is refused and nothing is written. The same sample measured "
                                   "again (another run, other timings) keeps the row already there and is "
                                   "counted as a duplicate.")
    p.add_argument("shards", nargs="+", metavar="SHARD", help="shard store files (.sqlite)")
    p.add_argument("--into", required=True, metavar="MAIN", help="the main store (created if missing)")
    p.set_defaults(func=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text

    result = api.merge(args.shards, args.into)
    out = terminal()
    table = Table(title=text(f"merged {len(result.sources)} shard(s) into {result.into}"))
    for col in ("table", "added", "replaced", "unchanged", "duplicates"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, c in result.counts.items():  # every table, in merge order
        table.add_row(name, str(c.added), str(c.replaced), str(c.unchanged), str(c.duplicates))
    out.print(table)
    return 0
