"""`harness humans import|ranking|sample|export-tasks`: import human rankings and labels, the model harm ranking
from one rater, and labelling plans for people to label this store's own outputs (then `harness annotate`)."""

from __future__ import annotations

import argparse
import json

from harness.cli.arguments import parse_groups


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness import api

    formats = api.rating_formats()
    p = sub.add_parser("humans", help="human rankings and labels: import, model harm ranking")
    hsub = p.add_subparsers(dest="humans_command", metavar="ACTION", required=True)
    i = hsub.add_parser("import", help="import a file or folder of human (and third-party judge) ratings",
                        description="Import ratings; importing the same file twice adds nothing (label-studio and "
                                    "plan-csv, labels of this store's own outputs, update answers that changed). "
                                    "Formats: "
                                    + ", ".join(formats))
    i.add_argument("format", choices=formats, metavar="FORMAT", help=" | ".join(formats))
    i.add_argument("path", metavar="PATH", help="the file, or for llm-harm the release folder; labels-*: options may "
                                                "follow, PATH?flags=S,H&missing=negative (which 0/1 flags give harm)")
    i.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    i.add_argument("--reverse-groups", default="", metavar="N,N",
                   help="llm-harm: groups whose Ranking uses 1 = most harmful (the study's Group 10; "
                        "`harness study reproduce` defaults to 10)")
    i.add_argument("--reverse", action="store_true", help="rankings-*: rank 1 = most harmful (default: higher = more harmful)")
    i.add_argument("--value", choices=["rank", "score"], default="rank", help="rankings-* wide format: what the cells hold")
    i.add_argument("--rater", default=None, help="rankings-*, pairwise-jsonl: rater name (default: 'human' or the rater column)")
    i.add_argument("--model", default=None, help="labels-*: model that wrote the responses (default: from the file name)")
    i.add_argument("--annotator", default=None, help="plan-csv: annotator of rows whose annotator cell is empty")
    i.add_argument("--json", action="store_true", help="print the import report as JSON")
    i.set_defaults(func=import_command)
    _register_plans(hsub)
    r = hsub.add_parser("ranking", help="per-model harm shares, rank histogram, pairwise wins and tests for one rater")
    r.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    r.add_argument("--rater", default="human", help="rater (or rater:annotator) whose rankings to use (default human)")
    r.add_argument("--task", default="rank", help="ratings task to read (default rank)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=ranking_command)


def import_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import terminal

    report = api.import_ratings(args.format, args.path, args.store,
                                reverse_groups=parse_groups(args.reverse_groups) if args.format == "llm-harm" else (),
                                reverse=args.reverse, value=args.value, rater=args.rater, model=args.model,
                                annotator=args.annotator)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        terminal().print("\n".join(report.lines()), markup=False)
    return 0


def ranking_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.agreement.render import ranking_rich, test_line
    from harness.cli.console import terminal

    result = api.harm_ranking(args.store, rater=args.rater, task=args.task)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = terminal()
    for table in ranking_rich(result):
        console.print(table)
    console.print(test_line(result), markup=False)
    return 0


# -- labelling plans -------------------------------------------------------------------------------
SAMPLE_HELP = """Draw a labelling plan: which of the store's outputs people should label (harmful prompts only unless
--include-benign). An item is one prompt with every variant's output for it on one device, shown
as Content A, B, C in a shuffled order. --per-variant N asks N labels of every variant;
--target-width W asks, per variant, the labels for a 95% Wilson interval of total width W around
its current judge harm rate (0.5, the worst case, when no judge rated it). This is a first estimate:
the prediction-powered (PPI) power analysis of the harm-calibration work refines it, since labels
that agree with the judge buy more precision than the binomial count says. Strategies: stratified
(round robin over device x category cells, every variant's quota spread over the categories) or
disagreement (items whose judges disagree or are unsure first). Then: `harness annotate --plan`,
or `harness humans export-tasks` for Label Studio or a spreadsheet."""


def _register_plans(hsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = hsub.add_parser("sample", help="draw a labelling plan of this store's outputs (then `harness annotate`)",
                        description=SAMPLE_HELP)
    s.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument("--per-variant", type=int, default=None, metavar="N", help="labels wanted per variant")
    how.add_argument("--target-width", type=float, default=None, metavar="W",
                     help="labels per variant for a harm-rate interval this wide (e.g. 0.1 = +-5 points)")
    s.add_argument("--strategy", choices=["stratified", "disagreement"], default="stratified")
    s.add_argument("--seed", type=int, default=0, help="seed of the draw and of the shown orders (default 0)")
    s.add_argument("--judge", default=None, metavar="NAME",
                   help="the judge whose harm rates are shown beside the quotas and size --target-width ones "
                        "(default: the judge with most verdicts)")
    s.add_argument("--include-benign", action="store_true", help="also label outputs on benign prompts")
    s.add_argument("--out", required=True, metavar="PLAN.jsonl", help="where to write the plan")
    s.add_argument("--json", action="store_true", help="print the plan's summary as JSON")
    s.set_defaults(func=sample_command)

    e = hsub.add_parser("export-tasks", help="write a plan as Label Studio tasks + labeling config, or a CSV sheet",
                        description="Write a labelling plan for another tool. label-studio: DIR/tasks.json and "
                                    "DIR/labeling-config.xml (create a project with the config, import the tasks; "
                                    "then `harness humans import label-studio EXPORT.json`). csv: DIR/tasks.csv, one "
                                    "row per item, outputs as columns, an empty answer column (then `harness humans "
                                    "import plan-csv FILLED.csv`).")
    e.add_argument("--plan", required=True, metavar="PLAN.jsonl", help="a plan from `harness humans sample`")
    e.add_argument("--format", choices=["label-studio", "csv"], required=True)
    e.add_argument("--task", choices=["rank", "label"], default="rank",
                   help="rank: rank the harmful outputs 1..h or N/A (default); label: harmful yes/no per output")
    e.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    e.set_defaults(func=export_tasks_command)


def sample_command(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from harness import api
    from harness.cli.console import terminal

    drawn = api.draw_labelling_plan(args.out, args.store, per_variant=args.per_variant, target_width=args.target_width,
                                    strategy=args.strategy, seed=args.seed, judge=args.judge,
                                    include_benign=args.include_benign)
    plan, out, judge = drawn.plan, drawn.out, drawn.judge
    if args.json:
        print(json.dumps(drawn.as_dict(), indent=2))
        return 0
    console = terminal()
    how = f"--target-width {args.target_width} from {judge or 'no judge (p = 0.5)'}" if args.target_width is not None \
        else f"--per-variant {args.per_variant}"
    table = Table(title=f"plan {plan.plan_id}: {len(plan.items)} items, {plan.strategy}, {how}")
    harm_col = f"harm ({judge})" if judge else "judge harm"  # a judge's name is text, never markup
    for col in ("device", "model", "variant", harm_col, "wanted", "available", "planned"):
        table.add_column(Text(col), justify="right" if col in (harm_col, "wanted", "available", "planned") else "left")
    for q in plan.quotas:
        rate = "-" if q.judge_harm_rate is None else f"{q.judge_harm_rate:.3f}"
        table.add_row(q.device, q.model, q.variant, rate, str(q.wanted), str(q.available),
                      f"{q.planned}" + (f" ({q.short} short)" if q.short else ""))
    console.print(table)
    console.print(f"wrote {out}; label it with `harness annotate --plan {out}` or export it with "
                  f"`harness humans export-tasks --plan {out} --format label-studio --out DIR`", markup=False)
    return 0


def export_tasks_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import echo

    written = api.export_labelling_tasks(args.plan, args.format, args.out, task=args.task)
    for p in written:
        echo(p)
    if args.format == "label-studio":
        echo(f"create a Label Studio project with {written[1]}, import {written[0]}, annotate, export as JSON, then "
              "`harness humans import label-studio EXPORT.json --store STORE`")
    else:
        echo(f"fill the {'ranking' if args.task == 'rank' else 'harmful'} column (one row per annotator and item), "
              "then `harness humans import plan-csv FILLED.csv --store STORE`")
    return 0
