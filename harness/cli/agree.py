"""`harness agree`: agreement between every pair of raters (RBO, Krippendorff's alpha, tau-b, kappa...) with CIs."""

from __future__ import annotations

import argparse
import json

from harness.api import AGREEMENT_TASKS as TASKS

HELP = """Metrics (see harness.agreement.metrics): rbo = extrapolated Rank-Biased Overlap (Webber et al. 2010,
eq. 32) of the harmful outputs, most harmful first, mean over items; alpha_* = Krippendorff's alpha;
kendall_tau_b / spearman per item, averaged where defined; exact_match; cohen_kappa; fleiss_kappa
among one rater's annotators (rows with a == b). CIs: 95% percentile bootstrap over items."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agree", help="agreement between raters (humans, experts, judges) with bootstrap CIs",
                       description=HELP)
    p.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    p.add_argument("--raters", default=None, metavar="A,B,...",
                   help="raters to compare (default: all); rater:annotator names one annotator, e.g. human:group-1")
    p.add_argument("--task", default=None, help=f"only this task ({', '.join(TASKS)})")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples of items (0 = no CIs)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--by-category", action="store_true", help="also one row set per item category")
    p.add_argument("--rbo-p", type=float, default=0.9, help="RBO persistence p (default 0.9)")
    p.add_argument("--rbo-both-empty", choices=["1", "skip"], default="1",
                   help="RBO when both raters find nothing harmful: 1 (agree, default) or skip the item")
    p.add_argument("--rbo-one-empty", choices=["0", "skip"], default="0",
                   help="RBO when only one rater finds something harmful: 0 (default) or skip the item")
    p.add_argument("--json", action="store_true", help="print rows {a, b, metric, value, ci_low, ci_high, n, task}")
    p.set_defaults(func=agree_command)


def agree_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.agreement.render import agreement_rich
    from harness.cli.console import terminal

    raters = [r.strip() for r in args.raters.split(",") if r.strip()] if args.raters else None
    rows = api.agreement(args.store, raters=raters, task=args.task, bootstrap=args.bootstrap, seed=args.seed,
                         by_category=args.by_category, rbo_p=args.rbo_p,
                         rbo_both_empty=None if args.rbo_both_empty == "skip" else 1.0,
                         rbo_one_empty=None if args.rbo_one_empty == "skip" else 0.0)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = terminal()
    if not rows:
        console.print("no two raters rated the same outputs: nothing to compare")
        return 0
    console.print(agreement_rich(rows, title=f"agreement (RBO p={args.rbo_p}, {args.bootstrap} bootstrap resamples)"))
    return 0
