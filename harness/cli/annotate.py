"""`harness annotate`: serve the local labelling page for a plan (or the whole store) until Ctrl-C."""

from __future__ import annotations

import argparse

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
    from harness import api
    from harness.cli.console import echo

    def say(message: str) -> None:
        echo(message)

    with api.labelling_page(args.store, plan=args.plan, annotator=args.annotator, task=args.task, host=args.host,
                            port=args.port, seed=args.seed, on_event=say) as page:
        who = f" as {args.annotator}" if args.annotator else ""
        done = f", {page.labelled} labelled" if page.labelled is not None else ""
        echo(f"labelling {page.items} items of plan {page.plan_id} ({args.task}{who}{done}) at {page.url}")
        echo("every answer is stored at once; Ctrl-C stops the server")
        try:
            page.server.serve_forever()
        except KeyboardInterrupt:
            echo("stopped; every answer is in the store", err=True)
    return 0
