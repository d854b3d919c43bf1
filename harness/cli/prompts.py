"""`harness prompts list|show|import`: the prompt sets and importing a user's CSV/JSONL."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.table import Table

from harness import safetext
from harness.cli.console import echo, terminal, text
from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("prompts", help="prompt sets: list, show, import",
                       description="Prompt sets (prompts/*.jsonl: id, text, category, benign, source; `default` = "
                                   "harm-eliciting + benign-controls; group-templated .toml sets such as qos): list "
                                   "them, show the prompts of one, or import a CSV or JSONL file as a set. See "
                                   "`harness prompts ACTION --help`.")
    psub = p.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    psub.add_parser("list", help="list prompt sets").set_defaults(func=list_command)
    s = psub.add_parser("show", help="show the prompts of a set")
    s.add_argument("name", help="set name or file")
    s.add_argument("--category", default=None)
    s.add_argument("--json", action="store_true", help="print JSON lines")
    s.set_defaults(func=show_command)
    i = psub.add_parser("import", help="convert a CSV or JSONL file into a prompt set")
    i.add_argument("path", help="a CSV or JSONL file; a published set's file (recognised by its columns, or named "
                                "FORMAT:PATH[?split=NAME], e.g. jbb-behaviors:FILE?split=benign); or "
                                "hf:OWNER/DATASET[@REV][:SPLIT]")
    i.add_argument("--out", required=True, help="output .jsonl (put it in a --catalog DIR's prompts/ to use it by name)")
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists (never an SQLite database)")
    i.add_argument("--id-column", default="id")
    i.add_argument("--text-column", default="text")
    i.add_argument("--category-column", default="category")
    i.add_argument("--benign-column", default="benign")
    i.add_argument("--source-column", default=None)
    i.add_argument("--category", default="uncategorized", help="category for rows without one")
    i.add_argument("--name", default=None, help="set name (default: the file's stem)")
    i.set_defaults(func=import_command)


def list_command(args: argparse.Namespace) -> int:
    from harness.prompts import load_set, set_names

    table = Table(title="prompt sets")
    for col in ("name", "prompts", "harmful", "benign", "categories"):
        table.add_column(col)
    for name in set_names():
        ps = load_set(name)
        cats = Counter(p.category for p in ps)
        table.add_row(text(name), str(len(ps)), str(sum(not p.benign for p in ps)), str(sum(p.benign for p in ps)),
                      text(", ".join(f"{c} ({n})" for c, n in sorted(cats.items()))))
    terminal().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness.prompts import load_set

    ps = [p for p in load_set(args.name) if args.category in (None, p.category)]
    if args.json:
        for p in ps:
            echo(safetext.json_line(json.dumps(p.as_record(), ensure_ascii=False)))
        return 0
    table = Table(title=f"{args.name}: {len(ps)} prompts")
    for col in ("id", "category", "benign", "text"):
        table.add_column(col)
    for p in ps:
        table.add_row(text(p.id), text(p.category), "yes" if p.benign else "no", text(p.text))
    terminal().print(table)
    return 0


def import_command(args: argparse.Namespace) -> int:
    from harness.infiles import base_suffix, regular_file
    from harness.outputs import output_file
    from harness.prompts import ColumnMap, import_csv, import_jsonl, read_published, write_jsonl

    cols = ColumnMap(args.id_column, args.text_column, args.category_column, args.benign_column, args.source_column)
    given = Path(args.path)
    out = output_file(args.out, force=args.force)
    if out.exists() and given.is_file() and out.resolve() == given.resolve():
        raise UsageError(f"--out {out} is the file being imported: pass another file name")
    # A published set (recognised by its columns, FORMAT:PATH or hf:) unless the user maps the columns.
    ps = read_published(args.path, args.name) if cols == ColumnMap() else None
    if ps is None:
        path = regular_file(given, "a CSV or JSONL")
        reader = import_csv if base_suffix(path) == ".csv" else import_jsonl
        ps = reader(path, cols, args.name, args.category)
    write_jsonl(ps, out)
    echo(f"imported {len(ps)} prompts from {args.path} -> {out}")
    return 0
