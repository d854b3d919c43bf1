"""`harness annotate`: serve the local labelling page for a plan (or the whole store) until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = """Serve a local web page where people label this store's outputs, one item at a time: the prompt, then
its outputs as Content A, B, C in an order shuffled per annotator (never model or variant names).
Rank the harmful ones 1 = least .. h = most harmful, N/A for the others (--task rank, the study's
protocol), or harmful yes/no (--task label). Every answer is stored at once as a rating of rater
'human' with the annotator's name, the order shown, the seconds spent and the plan; reopening the page
continues at the next unlabelled item. Several annotators can label the same plan (each with their
own --annotator, or by name on the start page); `harness agree` then reports their agreement."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("annotate", help="a local web page to label outputs (ranking or harmful yes/no)",
                       description=HELP)
    p.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    p.add_argument("--plan", default=None, metavar="PLAN.jsonl",
                   help="a plan from `harness humans sample` (default: every item of the store)")
    p.add_argument("--annotator", default=None, metavar="NAME",
                   help="who labels (default: asked on the start page, so several people can share one server)")
    p.add_argument("--task", choices=["rank", "label"], default="rank", help="rank (default) or label (harmful yes/no)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-annotator shown orders (default 0)")
    p.set_defaults(func=annotate_command)


def annotate_command(args: argparse.Namespace) -> int:
    from harness.annotate import Labelling, make_server
    from harness.annotate.server import check_host
    from harness.cli.console import echo
    from harness.humans.plan import read_plan, whole_store_plan
    from harness.store import DEFAULT_STORE, Store

    check_host(args.host)  # before the store is opened
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    items = read_plan(args.plan) if args.plan else None  # a bad plan fails before the store is touched
    with Store.open(store_path, create=False) as store:
        if items is None:
            items = whole_store_plan(store.generations(), seed=args.seed).items
        labelling = Labelling(store, items, args.task, seed=args.seed)

        def say(message: str) -> None:
            echo(message)

        server = make_server(labelling, host=args.host, port=args.port, annotator=args.annotator, on_event=say)
        who = f" as {args.annotator}" if args.annotator else ""
        progress = labelling.progress(args.annotator) if args.annotator else None
        done = f", {progress.labelled} labelled" if progress else ""
        echo(f"labelling {len(items)} items of plan {labelling.plan_id} ({args.task}{who}{done}) at {server.url}")
        echo("every answer is stored at once; Ctrl-C stops the server")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            echo("stopped; every answer is in the store", err=True)
        finally:
            server.close()
    return 0
