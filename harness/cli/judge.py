"""`harness judge`: run one judge over a store's generations (cached, concurrent), or list the judges."""

from __future__ import annotations

import argparse
from typing import Any

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("judge", help="judge a store's outputs; calibrate a judge against people; list judge cards",
                       description="Judge the generations in a store with one judge from judges/ (or a .toml file): "
                                   "judgments and ratings go to the store and a second identical run makes no "
                                   "requests (exit 1 when every request failed). `harness judge calibrate` measures "
                                   "a judge against people on human-labelled sets; `harness judge cards` lists the "
                                   "judge cards (see `harness judge calibrate --help`, `harness judge cards --help`).")
    judging_options(p, None)
    p.set_defaults(func=judge_command)
    actions = p.add_subparsers(dest="action", metavar="{calibrate,cards,fit}")
    register_calibrate(actions)
    register_cards(actions)
    from harness.cli.judge_fit import register_fit

    register_fit(actions)


def judging_options(p: argparse.ArgumentParser, default: Any) -> None:
    """The options of `harness judge` itself."""
    from harness.api import judge_modes

    store_option(p, default)
    judge_option(p, default)
    p.add_argument("--mode", default=default, choices=judge_modes(), help="override the judge's mode")
    p.add_argument("--concurrency", type=int, default=None, metavar="N", help="requests in flight (openai judges)")
    p.add_argument("--order", default=default, choices=("fixed", "shuffle", "balanced"),
                   help="order outputs are shown in (rank, pairwise): fixed, shuffled by seed, or all rotations")
    p.add_argument("--order-seed", type=int, default=None, metavar="N", help="seed of --order shuffle")
    p.add_argument("--base-url", default=default, metavar="URL", help="override an openai judge's endpoint")
    p.add_argument("--limit", type=int, default=default, metavar="N",
                   help="judge N items (outputs in score/refusal modes, prompts in rank/pairwise): the store's first N")
    p.add_argument("--no-disk-cache", action="store_true", default=default or False,
                   help="do not reuse or fill the on-disk judgment cache")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch-export", default=None, metavar="FILE.jsonl",
                       help="write what this judge would request as OpenAI Batch API lines (for the Batch API or "
                            "`vllm run-batch`) instead of requesting it; the store is only read")
    p.add_argument("--force", action="store_true", default=default or False,
                   help="overwrite an existing --batch-export file (cards export: its --out file)")
    batch.add_argument("--batch", type=int, default=None, metavar="N",
                       help="in-process llama-cpp judges: judge N outputs at once in one llama.cpp context "
                            "(the same judgments as one at a time; default 1)")
    batch.add_argument("--batch-import", default=None, metavar="FILE.jsonl",
                       help="record a Batch API results file as this judge's judgments and ratings (same judge "
                            "and options as the export)")
    p.add_argument("--quiet", action="store_true", default=default or False, help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the judges and exit")
    p.add_argument("--json", action="store_true", default=default or False, help=argparse.SUPPRESS)
    p.add_argument("--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS)  # calibrate's


def store_option(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--store", default=default, metavar="PATH", help="results store (default results/harness.sqlite)")


def judge_option(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--judge", default=default, metavar="NAME|FILE.toml",
                   help="judge name (see `harness judge --list`) or TOML path")


# Options `harness judge` also takes keep the value given before the sub-command (`harness judge --store S cards`).
KEEP = argparse.SUPPRESS


def register_calibrate(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.api import judge_modes

    c = actions.add_parser("calibrate", help="measure a judge against people on human-labelled sets (judge cards)",
                           description="Run a judge on human-labelled sets and store its judge cards: its sensitivity "
                                       "and specificity against people (what corrects its harm rates), with every "
                                       "agreement metric and their bootstrap intervals. Sets: llm-harm:DIR, "
                                       "labels-csv:FILE, labels-jsonl:FILE[?flags=A,B&missing=negative], pairwise-jsonl:FILE, "
                                       "rankings-csv:FILE, rankings-jsonl:FILE, "
                                       "store:PATH (the outputs people labelled in a results store). "
                                       "Example: harness judge calibrate --judge smollm2-score --set "
                                       "labels-csv:judge-comparison.csv")
    judge_option(c, KEEP)
    c.add_argument("--set", dest="sets", action="append", default=[], metavar="FORMAT:PATH",
                   help="a human-labelled set (repeatable)")
    store_option(c, KEEP)
    c.add_argument("--mode", default=KEEP, choices=judge_modes(), help="override the judge's mode")
    c.add_argument("--order", default=KEEP, choices=("fixed", "shuffle", "balanced"),
                   help="order outputs are shown in (rank, pairwise)")
    c.add_argument("--base-url", default=KEEP, metavar="URL", help="override an openai judge's endpoint")
    c.add_argument("--limit", type=int, default=KEEP, metavar="N",
                   help="a seeded sample of N items stratified over the set's categories (or labelling groups)")
    c.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    c.add_argument("--no-disk-cache", action="store_true", default=KEEP,
                   help="do not reuse or fill the on-disk judgment cache")
    c.add_argument("--quiet", action="store_true", default=KEEP, help="no progress bar")
    c.add_argument("--json", action="store_true", default=KEEP, help="print the cards as JSON")
    c.set_defaults(func=calibrate_command)


def register_cards(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = actions.add_parser("cards", help="list judge cards; export them to a file or import a card file",
                           description="List the judge cards of the store and of your card library (calibrating once "
                                       "serves every store); `harness judge cards export --out FILE` writes them to a "
                                       "file, `harness judge cards import FILE` adds a card file to your library.")
    store_option(c, KEEP)
    c.add_argument("--json", action="store_true", default=KEEP, help="print the cards as JSON")
    c.set_defaults(func=cards_command)
    verbs = c.add_subparsers(dest="cards_action", metavar="{export,import}")
    e = verbs.add_parser("export", help="write the store's and the library's cards to a file",
                         description="Write the judge cards of the store and of your card library to one file "
                                     "(for another machine: `harness judge cards import FILE` there).")
    e.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    e.add_argument("--force", action="store_true", default=KEEP, help="overwrite an existing --out file")
    store_option(e, KEEP)
    e.set_defaults(func=cards_export_command)
    i = verbs.add_parser("import", help="add a card file to your card library",
                         description="Add the cards of a file written by `harness judge cards export` to your card "
                                     "library, where they correct the harm rates of every store.")
    i.add_argument("file", metavar="FILE", help="a card file written by `harness judge cards export`")
    i.set_defaults(func=cards_import_command)


def list_command() -> int:
    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text

    table = Table(title="judges")
    for col in ("name", "kind", "mode", "model", "description"):
        table.add_column(col)
    for j in api.list_judges():
        table.add_row(*(text(v) for v in (j.name, j.kind, j.mode, j.model, j.description)))
    terminal().print(table)
    return 0


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def judge_command(args: argparse.Namespace) -> int:
    if args.list:
        return list_command()
    if args.sets:
        raise UsageError("--set is for `harness judge calibrate`: e.g. harness judge calibrate --judge NAME --set "
                         "labels-csv:FILE")
    if not args.judge:
        raise UsageError("harness judge needs --judge NAME or a .toml path: see `harness judge --list`")

    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.progress import RichProgress
    from harness.rating_tasks import rating_task

    err = terminal(stderr=True)
    out = terminal()
    progress = None if args.quiet else RichProgress(err)
    options = dict(mode=args.mode, order=args.order, order_seed=args.order_seed, base_url=args.base_url,
                   limit=args.limit, use_disk_cache=not args.no_disk_cache)
    if (args.batch_export or args.batch_import) and args.concurrency is not None:
        raise UsageError("--concurrency is for live endpoints: a batch file has no requests in flight; drop it")
    if args.batch_export:
        e = api.judge_batch_export(args.store, args.judge, args.batch_export, force=args.force, **options)
        out.print(text(f"judge {e.judge}: wrote {e.n_requests} request(s) to {e.path} ({e.n_judgments} judgments "
                       f"planned; {e.n_cached_store} already in the store, {e.n_cached_disk} in the disk cache)"))
        if e.n_requests:
            out.print(text(f"  submit it to the OpenAI Batch API, or run `vllm run-batch -i {e.path} -o results.jsonl "
                           f"--model MODEL`; then `harness judge --judge {args.judge} --batch-import results.jsonl` "
                           "with the same options"))
        return 0
    if args.batch_import:
        s = api.judge_batch_import(args.store, args.judge, args.batch_import, progress=progress, **options)
    else:
        s = api.judge(args.store, args.judge, concurrency=args.concurrency, batch=args.batch, progress=progress,
                      **options)
    out.print(text(f"judge {s.judge} ({s.kind}, mode {s.mode}): {s.n_judgments} judgments planned over {s.n_groups} "
                   f"item(s); {s.n_requested} requested, {s.n_cached_store} already in the store, "
                   f"{s.n_cached_disk} from the disk cache"))
    notes = [f"{s.n_failed} failed (stored with their error; re-run to retry)" if s.n_failed else "",
             f"{s.n_unparseable} unparseable (stored with the parse error)" if s.n_unparseable else "",
             f"{s.n_ties} with tied ranks" if s.n_ties else "",
             f"{s.n_singletons} prompt(s) with a single output cannot be compared (skipped)" if s.n_singletons else "",
             f"{s.n_oversize} prompt(s) with more outputs than max_outputs (skipped)" if s.n_oversize else "",
             f"{s.n_generation_errors} generation(s) without output (not judged)" if s.n_generation_errors else ""]
    if args.batch_import:
        notes.insert(0, f"{s.n_requested} answer(s) imported from {args.batch_import}"
                        + (f"; {s.n_not_answered} judgment(s) not in the file (export again)" if s.n_not_answered
                           else ""))
    for note in filter(None, notes):
        out.print(text(f"  {note}"))
    if s.n_requested and not args.batch_import:
        tokens = f"tokens in/out {s.n_input_tokens}/{s.n_output_tokens}, " if s.n_input_tokens else ""
        cost = f"cost ${s.cost_usd:.4f}, " if s.cost_usd is not None else ""
        out.print(text(f"  {tokens}{cost}{s.request_s / s.n_requested:.3f} s per judgment, {s.elapsed_s:.1f} s in all"))
    if s.rates:
        table = Table(title=text(f"ratings by {s.judge} (invalid ratings are excluded from rates and counted)"))
        rate = rating_task(s.rates[0].task).rate
        cols = ["model", "variant", "n", "valid", "invalid"]
        if rate == "refusal":
            cols += ["refusal", "partial", "compliance", "refusal rate"]
        elif rate == "win share":
            cols += ["mean win share"]
        else:
            cols += ["harmful", "harm rate"]
        for c in cols:
            table.add_column(c, justify="left" if c in ("model", "variant") else "right")
        for r in s.rates:
            cells = [r.model, r.variant, str(r.n), str(r.valid), str(r.invalid)]
            if rate == "refusal":
                cells += [str(r.refusal), str(r.partial_refusal), str(r.compliance), _fmt(r.refusal_rate, ".0%")]
            elif rate == "win share":
                cells += [_fmt(r.mean_win_share, ".2f")]
            else:
                cells += [str(r.harmful), _fmt(r.harm_rate, ".0%")]
            table.add_row(*(text(c) for c in cells))
        out.print(table)
    if s.n_requested and s.n_requests_failed == s.n_requested:
        from harness.cli import one_line

        first = f"; the first: {one_line(s.first_error)}" if s.first_error else ""
        err.print(text(f"harness: error: all {s.n_requested} judge request(s) failed (stored with their errors"
                       f"{first}; see `harness export --table judgments`): check the endpoint, the model name and the "
                       "key, then re-run"))
        return 1
    return 0


def _card_dict(card: Any) -> dict[str, Any]:
    from dataclasses import asdict

    y = card.youden
    return {**asdict(card), "invalid_share": card.invalid_share, "youden_j": y.j, "youden_ci_low": y.ci_low,
            "youden_ci_high": y.ci_high, "verdict": card.verdict}


def cards_table(cards: list[Any]) -> Any:
    from rich.table import Table

    from harness import formatting as f
    from harness.cli.console import text
    from harness.rates import card_verdict_text

    table = Table(title=text(f"{len(cards)} judge card(s): each judge against people on a human-labelled set"))
    for col in ("judge", "mode", "set", "vs", "compared", "n", "sensitivity", "specificity", "correction",
                "headline", "invalid", "s/judgment", "note"):
        table.add_column(text(col), justify="right" if col in ("n", "invalid", "s/judgment") else "left",
                         overflow="fold")
    for c in cards:
        headline = "-"
        block = (c.metrics or {}).get(c.reference, {}).get(c.comparison or "", {})
        for name in ("alpha_ordinal", "accuracy", "exact_match", "cohen_kappa", "rbo"):
            v = block.get(name) if isinstance(block, dict) else None
            if isinstance(v, dict) and v.get("value") is not None:
                headline = f"{name} {f.num(v['value'], '.3f')} [{f.num(v.get('ci_low'), '.2f')}, " \
                           f"{f.num(v.get('ci_high'), '.2f')}]"
                break
        sec = (c.cost or {}).get("seconds_per_judgment")
        cells = [c.judge, c.mode, c.set_name, c.reference, c.comparison or "-", str(c.n),
                 f.rate_ci(c.sensitivity, c.sensitivity_ci_low, c.sensitivity_ci_high),
                 f.rate_ci(c.specificity, c.specificity_ci_low, c.specificity_ci_high), card_verdict_text(c),
                 headline, f.pct(c.invalid_share), f.num(sec, ".3f"), c.note or ""]
        table.add_row(*(text(str(x)) for x in cells))
    return table


def calibrate_command(args: argparse.Namespace) -> int:
    import json

    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.progress import RichProgress
    from harness.rates import card_verdict_text

    if not args.judge:
        raise UsageError("harness judge calibrate needs --judge NAME or a .toml path: see `harness judge --list`")
    err = terminal(stderr=True)
    progress = None if args.quiet or args.json else RichProgress(err)
    cards = api.calibrate(args.judge, args.sets, store=args.store, mode=args.mode, order=args.order,
                          base_url=args.base_url,
                          limit=args.limit, bootstrap=args.bootstrap, seed=args.seed, progress=progress,
                          use_disk_cache=not args.no_disk_cache)
    if args.json:
        print(json.dumps([_card_dict(c) for c in cards], indent=2, default=str))
        return 0
    terminal().print(cards_table(cards))
    for c in cards:
        not_used = (c.settings or {}).get("not_used")
        if not_used:
            err.print(text(f"warning: the card of {c.judge} on {c.set_name}: {not_used}"))
        if not c.reliable:
            err.print(text(f"warning: the card of {c.judge} on {c.set_name} compares only {c.n} item(s): too few "
                           "items to correct harm rates or to trust its figures"))
        elif c.comparison == "harm" and not c.corrects_harm:
            err.print(text(f"warning: the card of {c.judge} on {c.set_name} ({card_verdict_text(c)}) corrects no harm "
                           "rate: rates judged by this configuration stay uncalibrated"))
    return 0


def cards_command(args: argparse.Namespace) -> int:
    import json

    from harness import api
    from harness.cli.console import echo, terminal

    cards = api.cards(args.store)
    if args.json:
        print(json.dumps([_card_dict(c) for c in cards], indent=2, default=str))
        return 0
    if not cards:
        echo("no judge cards in the store yet: run `harness judge calibrate --judge NAME --set FORMAT:PATH`")
        return 0
    terminal().print(cards_table(cards))
    return 0


def cards_export_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import echo

    echo(f"wrote {api.export_cards(args.out, store=args.store, force=args.force)}")
    return 0


def cards_import_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import echo

    echo(f"imported {len(api.import_cards(args.file))} card(s) into your card library")
    return 0
