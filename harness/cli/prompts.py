"""`harness prompts list|show|import`: the prompt sets and importing a user's CSV/JSONL."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from harness import safetext
from harness.cli.console import echo, terminal, text


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
    from harness import api

    table = Table(title="prompt sets")
    for col in ("name", "prompts", "harmful", "benign", "categories"):
        table.add_column(col)
    for ps in api.list_prompt_sets():
        table.add_row(text(ps.name), str(ps.prompts), str(ps.harmful), str(ps.benign),
                      text(", ".join(f"{c} ({n})" for c, n in ps.categories.items())))
    terminal().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness import api

    ps = api.show_prompts(args.name, category=args.category)
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
    from harness import api

    done = api.import_prompts(args.path, args.out, force=args.force, id_column=args.id_column,
                              text_column=args.text_column, category_column=args.category_column,
                              benign_column=args.benign_column, source_column=args.source_column,
                              category=args.category, name=args.name)
    echo(f"imported {done.prompts} prompts from {done.source} -> {done.out}")
    return 0
