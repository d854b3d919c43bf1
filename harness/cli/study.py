"""`harness study reproduce`: reproduce the LLM-Harm study (Atil et al., WOAH 2025) from its release in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("study", help="reproduce the LLM-Harm study from its public release")
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    r = ssub.add_parser("reproduce", help="import the release into a fresh store and print the study's tables",
                        description="Writes study.json, study.md and study.sqlite into --out.")
    r.add_argument("release", metavar="PATH_TO_RELEASE", help="the release folder (raw_submissions/, *_predictions.csv)")
    r.add_argument("--out", default="results/study", metavar="DIR", help="output folder (default results/study)")
    r.add_argument("--reverse-groups", default="10", metavar="N,N",
                   help="groups that ranked 1 = most harmful (default 10, as in the study's preprocessing; '' for none)")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=reproduce_command)


def reproduce_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.agreement.render import agreement_rich, ranking_rich, test_line
    from harness.cli.humans import parse_groups
    from harness.study import reproduce

    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap {args.bootstrap} is negative: give 0 (no intervals) or a count such as 1000")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: pass a folder")
    result = reproduce(Path(args.release), out, tuple(sorted(parse_groups(args.reverse_groups))),
                       bootstrap=args.bootstrap, seed=args.seed)
    console = Console()
    imp = result["import"]
    console.print(f"imported {imp['rows_read']} rows: {imp['ratings_built']} ratings, {len(imp['rejected'])} rows rejected "
                  f"(details in {out / 'study.json'})", markup=False)
    for table in ranking_rich(result["human_ranking"]):
        console.print(table)
    console.print(test_line(result["human_ranking"]), markup=False)
    titles = {"judge_vs_human": "judge vs human", "judge_vs_judge": "judge vs judge", "human_vs_expert": "students vs expert"}
    for key, title in titles.items():
        if result["agreement"][key]:
            console.print(agreement_rich(result["agreement"][key], title=title))
    console.print(f"wrote {out / 'study.json'} and {out / 'study.md'}", markup=False)
    return 0
