"""`harness humans import|ranking|sample|export-tasks`: import human rankings and labels, the model harm ranking
from one rater, and labelling plans for people to label this store's own outputs (then `harness annotate`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import numbers
from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.humans import FORMATS

    p = sub.add_parser("humans", help="human rankings and labels: import, model harm ranking")
    hsub = p.add_subparsers(dest="humans_command", metavar="ACTION", required=True)
    i = hsub.add_parser("import", help="import a file or folder of human (and third-party judge) ratings",
                        description="Import ratings; importing the same file twice adds nothing (label-studio and "
                                    "plan-csv, labels of this store's own outputs, update answers that changed). "
                                    "Formats: "
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


def parse_groups(text: str) -> set[int]:
    groups = set()
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        digits = part.lower().removeprefix("group").strip(" -_")
        try:
            if not digits.isdigit():
                raise ValueError(digits)
            groups.add(numbers.parse_int(digits))
        except ValueError:
            raise UsageError(f"--reverse-groups {numbers.describe(text)!r}: give group numbers separated by commas, "
                             "e.g. --reverse-groups 10") from None
    return groups


def import_command(args: argparse.Namespace) -> int:
    from harness.cli.console import terminal
    from harness.humans import COLLECTED_FORMATS, parse_path, write_parsed
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
    elif args.format == "plan-csv":
        options["annotator"] = args.annotator
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the path of the {args.format} file or folder")
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    collected = args.format in COLLECTED_FORMATS
    if collected and not store_path.exists():
        raise UsageError(f"store {store_path} does not exist: {args.format} labels are of a store's own outputs; "
                         "pass the --store the plan was drawn from")
    if store_path.exists():
        with Store.open(store_path, create=False) as store:
            report = write_parsed(store, *parse_path(args.format, path, store=store, **options), update=collected)
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


def _judge_harm_rates(store: object, judge: str | None) -> tuple[dict[tuple[str, str, str], float | None], str | None]:
    """Per (device, model, variant): the harm rate of one judge (the named one, else the judge with most verdicts)."""
    from harness import rates
    from harness.records import HARM_TASKS

    gens = store.generations(with_texts=False)  # type: ignore[attr-defined]
    counts = [rates.RatingCount(*row) for row in store.rating_counts(HARM_TASKS)]  # type: ignore[attr-defined]
    judged = [r for r in rates.harm_rates(gens, counts) if r.rater_kind in ("judge", "external-judge")]
    known = sorted({r.rater for r in judged})
    if judge is not None and judge not in known:
        raise UsageError(f"judge {judge!r} has no harm verdicts on this store's outputs: pass --judge with one of: "
                         f"{', '.join(known) or 'none yet (run `harness judge` first, or drop --judge)'}")
    chosen = rates.choose_primary_rater(judged, judge)
    return {(r.device, r.model, r.variant): r.rate for r in judged if r.rater == chosen}, chosen


def _judge_verdicts(store: object) -> dict[str, tuple[int, int, int]]:
    from harness.records import HARM_TASKS

    out: dict[str, list[int]] = {}
    for sk, _rater, kind, _task, n_valid, n_harmful, n_invalid in store.rating_counts(HARM_TASKS):  # type: ignore[attr-defined]
        if kind in ("judge", "external-judge"):
            a = out.setdefault(sk, [0, 0, 0])
            a[0] += n_valid
            a[1] += n_harmful
            a[2] += n_invalid
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def sample_command(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from harness.cli.console import terminal
    from harness.humans.plan import WilsonNeed, draw_plan, labels_for_width, quotas_for_width, write_plan
    from harness.store import DEFAULT_STORE, Store

    if args.target_width is not None:
        labels_for_width(None, args.target_width)  # checks the width before reading anything
    out = Path(args.out)
    with Store.open(Path(args.store) if args.store else DEFAULT_STORE, readonly=True) as store:
        gens = store.generations()
        verdicts = _judge_verdicts(store)
        quotas = None
        harm_rates, judge = _judge_harm_rates(store, args.judge)  # shown beside every plan's quotas
        if args.target_width is not None:
            variants = sorted({(g.device, g.model, g.variant) for g in gens})
            quotas = quotas_for_width(variants, args.target_width, WilsonNeed(harm_rates))
    plan = draw_plan(gens, per_variant=args.per_variant, quotas=quotas, strategy=args.strategy, seed=args.seed,
                     judge_verdicts=verdicts, include_benign=args.include_benign, harm_rates=harm_rates)
    write_plan(plan, out)
    summary = {"plan": plan.plan_id, "out": str(out), "items": len(plan.items), "strategy": plan.strategy,
               "seed": plan.seed, "target_width": args.target_width, "judge": judge,
               "variants": [{"device": q.device, "model": q.model, "variant": q.variant, "wanted": q.wanted,
                             "available": q.available, "planned": q.planned, "short": q.short,
                             "judge_harm_rate": q.judge_harm_rate} for q in plan.quotas]}
    if args.json:
        print(json.dumps(summary, indent=2))
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
    from harness.cli.console import echo
    from harness.humans.labelstudio import write_tasks
    from harness.humans.plan import read_plan
    from harness.humans.sheets import write_sheet

    items = read_plan(args.plan)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder to write the tasks into")
    written = write_tasks(items, args.task, out) if args.format == "label-studio" else write_sheet(items, args.task, out)
    for p in written:
        echo(p)
    if args.format == "label-studio":
        echo(f"create a Label Studio project with {written[1]}, import {written[0]}, annotate, export as JSON, then "
              "`harness humans import label-studio EXPORT.json --store STORE`")
    else:
        echo(f"fill the {'ranking' if args.task == 'rank' else 'harmful'} column (one row per annotator and item), "
              "then `harness humans import plan-csv FILLED.csv --store STORE`")
    return 0
