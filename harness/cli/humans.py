"""`harness humans import|ranking`: import human rankings and labels; the model harm ranking from one rater."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.humans import FORMATS

    p = sub.add_parser("humans", help="human rankings and labels: import, model harm ranking")
    hsub = p.add_subparsers(dest="humans_command", metavar="ACTION", required=True)
    i = hsub.add_parser("import", help="import a file or folder of human (and third-party judge) ratings",
                        description="Import ratings; importing the same file twice adds nothing. Formats: "
                                    + ", ".join(FORMATS))
    i.add_argument("format", choices=FORMATS, metavar="FORMAT", help=" | ".join(FORMATS))
    i.add_argument("path", metavar="PATH", help="the file, or for llm-harm the release folder")
    i.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    i.add_argument("--reverse-groups", default="", metavar="N,N",
                   help="llm-harm: groups whose Ranking uses 1 = most harmful (the study's Group 10; "
                        "`harness study reproduce` defaults to 10)")
    i.add_argument("--reverse", action="store_true", help="rankings-*: rank 1 = most harmful (default: higher = more harmful)")
    i.add_argument("--value", choices=["rank", "score"], default="rank", help="rankings-* wide format: what the cells hold")
    i.add_argument("--rater", default=None, help="rankings-*, pairwise-jsonl: rater name (default: 'human' or the rater column)")
    i.add_argument("--model", default=None, help="labels-csv: model that wrote the responses (default: from the file name)")
    i.add_argument("--json", action="store_true", help="print the import report as JSON")
    i.set_defaults(func=import_command)
    r = hsub.add_parser("ranking", help="per-model harm shares, rank histogram, pairwise wins and tests for one rater")
    r.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    r.add_argument("--rater", default="human", help="rater (or rater:annotator) whose rankings to use (default human)")
    r.add_argument("--task", default="rank", help="ratings task to read (default rank)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=ranking_command)


def parse_groups(text: str) -> set[int]:
    groups = set()
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        digits = part.lower().removeprefix("group").strip(" -_")
        if not digits.isdigit():
            raise UsageError(f"--reverse-groups {text!r}: give group numbers separated by commas, e.g. --reverse-groups 10")
        groups.add(int(digits))
    return groups


def import_command(args: argparse.Namespace) -> int:
    from harness.cli.console import terminal
    from harness.humans import parse_path, write_parsed
    from harness.store import DEFAULT_STORE, Store

    options: dict[str, object] = {}
    if args.format == "llm-harm":
        options["reverse_groups"] = parse_groups(args.reverse_groups)
    elif args.format.startswith("rankings-"):
        options.update(reverse=args.reverse, value=args.value, rater=args.rater)
    elif args.format == "pairwise-jsonl":
        options["rater"] = args.rater
    elif args.format == "labels-csv":
        options["model"] = args.model
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the path of the {args.format} file or folder")
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    if store_path.exists():
        with Store.open(store_path, create=False) as store:
            report = write_parsed(store, *parse_path(args.format, path, store=store, **options))
    else:  # nothing to link to yet: parse first, so a bad file leaves no empty store behind
        parsed = parse_path(args.format, path, **options)
        with Store.open(store_path) as store:
            report = write_parsed(store, *parsed)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        terminal().print("\n".join(report.lines()), markup=False)
    return 0


def ranking_command(args: argparse.Namespace) -> int:
    from harness.agreement import model_harm_ranking
    from harness.agreement.render import ranking_rich, test_line
    from harness.cli.console import terminal
    from harness.store import DEFAULT_STORE, Store

    with Store.open(Path(args.store) if args.store else DEFAULT_STORE, readonly=True) as store:
        result = model_harm_ranking(store, rater=args.rater, task=args.task)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = terminal()
    for table in ranking_rich(result):
        console.print(table)
    console.print(test_line(result), markup=False)
    return 0
