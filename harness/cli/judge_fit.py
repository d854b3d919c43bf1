"""`harness judge fit`: fit a probe judge on human-labelled sets and print its out-of-fold cards beside controls."""

from __future__ import annotations

import argparse
from typing import Any

SET_HELP = ("a human-labelled set (repeatable): llm-harm:DIR, labels-csv:FILE, labels-jsonl:FILE (labels-*: texts "
            "alone too; ?flags=A,B&missing=negative after the path), pairwise-jsonl:FILE, rankings-csv:FILE, "
            "rankings-jsonl:FILE, or store:PATH (the outputs people labelled in a results store or its folder, "
            "e.g. store:results)")


def register_fit(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    f = actions.add_parser("fit", help="fit a probe judge (a linear model on a small model's hidden states)",
                           description="Fit a probe judge on human-labelled sets: a small base model's pooled hidden "
                                       "state of each judged conversation, standardised, an L2 logistic regression. "
                                       "Cross-validation is grouped by prompt and nested (pooling, regularisation and "
                                       "threshold chosen inside each training fold); every card comes from "
                                       "out-of-fold predictions, beside a TF-IDF bag-of-words control and the refusal "
                                       "detector. With several --set, the transfer table cards each set with a probe "
                                       "fitted without it. Writes judges/NAME.toml (kind = \"probe\") and its weights "
                                       "into the user catalog (needs the `probe` extra: scikit-learn). Example: harness "
                                       "judge fit --base smollm2-135m-instruct:Q4_1 --set labels-csv:judge-comparison.csv "
                                       "--task harm --name my-probe; on your own labelled outputs: --set store:results")
    f.add_argument("--base", required=True, metavar="MODEL[:VARIANT]", help="the base model (a GGUF variant)")
    f.add_argument("--set", dest="fit_sets", action="append", default=[], metavar="FORMAT:PATH", help=SET_HELP)
    f.add_argument("--task", choices=("harm", "refusal", "rank"), default="harm",
                   help="harm: harmful or not; refusal: refused (fully or partly) or complied; rank: a harm score "
                        "that ranks each prompt's outputs (fitted on people's rankings: rankings-csv, rankings-jsonl, "
                        "llm-harm)")
    f.add_argument("--name", dest="fit_name", required=True, metavar="NAME", help="the new judge's name")
    f.add_argument("--folds", type=int, default=5, metavar="N", help="outer folds (default 5)")
    f.add_argument("--seed", dest="fit_seed", type=int, default=0, metavar="N", help="folds' seed (default 0)")
    f.add_argument("--catalog", dest="fit_catalog", default=None, metavar="DIR",
                   help="the catalog folder to write judges/NAME.toml into (default: the user catalog)")
    f.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    f.set_defaults(func=fit_command)


def _num(v: Any, spec: str) -> str:
    import math

    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def cards_table(cards: list[Any], title: str) -> Any:
    from rich.table import Table

    from harness.cli.console import text

    table = Table(title=text(title))
    for col in ("set", "fitted on", "rater", "n", "+/-", "sensitivity", "specificity", "J", "AUROC"):
        table.add_column(text(col), justify="left" if col in ("set", "fitted on", "rater") else "right")
    for c in cards:
        sens = f"{_num(c.sensitivity, '.2f')} [{_num(c.sensitivity_ci[0], '.2f')}, {_num(c.sensitivity_ci[1], '.2f')}]"
        spec = f"{_num(c.specificity, '.2f')} [{_num(c.specificity_ci[0], '.2f')}, {_num(c.specificity_ci[1], '.2f')}]"
        table.add_row(*(text(str(x)) for x in (c.set_name, c.fitted_on, c.rater, c.n, f"{c.n_positive}/{c.n_negative}",
                                               sens, spec, _num(c.youden_j, "+.2f"), _num(c.auroc, ".2f"))))
    return table


def ranking_table(cards: list[Any], title: str) -> Any:
    """The rank task's cards: the ranking agreement of the codes derived from each rater's scores with people's."""
    from rich.table import Table

    from harness.cli.console import text

    metrics = (("alpha_ordinal", "alpha (ordinal)"), ("kendall_tau_b", "Kendall tau-b"), ("rbo", "RBO"),
               ("exact_match", "exact match"))
    table = Table(title=text(title))
    for col in ("set", "fitted on", "rater", "items", *(label for _, label in metrics)):
        table.add_column(text(col), justify="left" if col in ("set", "fitted on", "rater") else "right")
    for c in cards:
        figures = c.ranking or {}
        cells = []
        for metric, _ in metrics:
            f = figures.get(metric) or {}
            cells.append(f"{_num(f.get('value'), '+.2f')} [{_num(f.get('ci_low'), '.2f')}, {_num(f.get('ci_high'), '.2f')}]")
        items = (figures.get("alpha_ordinal") or {}).get("n")
        table.add_row(*(text(str(x)) for x in (c.set_name, c.fitted_on, c.rater, _num(items, "d"), *cells)))
    return table


def fit_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.progress import RichProgress

    err = terminal(stderr=True)
    out = terminal()
    progress = None if getattr(args, "quiet", False) else RichProgress(err)
    fit = api.fit_probe(args.base, args.fit_sets or [], args.task, args.fit_name, folds=args.folds, seed=args.fit_seed,
                        catalog_dir=args.fit_catalog, progress=progress)
    report, written = fit.report, fit.written
    for s in report.sets:
        out.print(text(f"set {s['name']}: {s['n']} labelled outputs of {s['prompts']} prompts ({s['positive']} "
                       f"positive, {s['negative']} negative; labels: {s['labels']})"))
    out.print(cards_table(report.cards, f"{args.task} probe on {report.base}: out-of-fold cards ({report.folds} folds "
                                        "grouped by prompt, every choice nested), beside two controls"))
    if any(c.ranking is not None for c in report.cards):
        out.print(ranking_table(report.cards, "rank agreement with people of the codes derived from out-of-fold "
                                              "scores (95% bootstrap over items)"))
    if report.transfer:
        out.print(cards_table(report.transfer, "transfer: fitted on other sets, carded on the held-out set"))
        if any(c.ranking is not None for c in report.transfer):
            out.print(ranking_table(report.transfer, "transfer: rank agreement on the held-out set"))
        for line in report.verdicts():
            out.print(text(f"  {line}"))
    fit = report.weights.fit
    speed = f"; {report.seconds_per_output:.3f} s per output embedded" if report.seconds_per_output else ""
    out.print(text(f"kept: pooling {fit['pooling']}, C {fit['C']}, threshold {report.weights.threshold:.3f} (chosen by "
                   f"grouped cross-validation on every set){speed}"))
    out.print(text(f"wrote judge '{args.fit_name}' to {written.entry} and its weights to {written.weights} "
                   f"(sha256 {written.weights_sha256[:12]})"))
    return 0
