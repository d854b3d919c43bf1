"""`harness study reproduce`: reproduce the LLM-Harm study (Atil et al., WOAH 2025) from its release in one command."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("study", help="reproduce the LLM-Harm study from its public release; audit HH-RLHF pairs")
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
    j = ssub.add_parser("judge", help="the study's task as a judge benchmark: rank its triplets, compare with its judges",
                        description="The judge ranks the release's triplets (rank mode, or ranks derived from its "
                                    "per-output scores); its agreement with the students and the expert is printed "
                                    "under GPT-4o's, Sonnet's and Llama's on the same triplets. Writes "
                                    "study-judge.json and study-judge.md into --out.")
    j.add_argument("release", metavar="PATH_TO_RELEASE", help="the release folder (raw_submissions/, *_predictions.csv)")
    j.add_argument("--judge", "--rater", dest="judge", required=True, metavar="NAME|FILE.toml",
                   help="the judge (see `harness judge --list`), e.g. smollm2-rank")
    j.add_argument("--mode", default=None, help="override the judge's mode (rank or score)")
    j.add_argument("--order", default=None, choices=("fixed", "shuffle", "balanced"),
                   help="the order outputs are shown in; balanced also measures position bias")
    j.add_argument("--base-url", default=None, metavar="URL", help="override an openai judge's endpoint")
    j.add_argument("--limit", type=int, default=None, metavar="N", help="judge N triplets: a seeded sample stratified over the student groups")
    j.add_argument("--out", default="results/study", metavar="DIR", help="output folder (default results/study)")
    j.add_argument("--store", default=None, metavar="PATH", help="also store the judge's card in this store")
    j.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--no-disk-cache", action="store_true", help="judge again instead of reading cached judgments")
    j.add_argument("--json", action="store_true", help="print the result as JSON")
    j.set_defaults(func=judge_command)
    a = ssub.add_parser("hh-audit", help="is HH-RLHF's chosen (less harmful) reply itself harmful? judge both replies",
                        description="Judges the chosen and the rejected reply of every HH-RLHF harmless-base pair and "
                                    "prints how often the chosen reply (less harmful by the crowd) is itself harmful, "
                                    "and the judge's agreement with the crowd's choice, with Wilson 95% intervals.")
    a.add_argument("file", metavar="FILE", help="HH-RLHF harmless-base pairs (JSONL with chosen/rejected; .gz read)")
    a.add_argument("--judge", required=True, metavar="NAME|FILE.toml",
                   help="a judge with per-reply harm verdicts (score, guard), e.g. smollm2-score; a pairwise judge "
                        "gives the agreement only")
    a.add_argument("--mode", default=None, help="override the judge's mode (score or pairwise)")
    a.add_argument("--base-url", default=None, metavar="URL", help="override an openai judge's endpoint")
    a.add_argument("--limit", type=int, default=None, metavar="N", help="audit only the first N pairs")
    a.add_argument("--no-disk-cache", action="store_true", help="judge again instead of reading cached judgments")
    a.add_argument("--json", action="store_true", help="print the result as JSON")
    a.set_defaults(func=hh_audit_command)


def reproduce_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.agreement.render import agreement_rich, ranking_rich, test_line
    from harness.cli.arguments import parse_groups
    from harness.cli.console import terminal

    out = Path(args.out)
    result = api.reproduce_study(args.release, out, reverse_groups=parse_groups(args.reverse_groups),
                                 bootstrap=args.bootstrap, seed=args.seed)
    console = terminal()
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


def judge_command(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.progress import RichProgress
    from harness.study import columns, row_cells

    err = terminal(stderr=True)
    progress = None if args.json else RichProgress(err)
    result = api.study_judge(args.release, args.judge, out=args.out, store=args.store, mode=args.mode,
                             order=args.order, base_url=args.base_url, limit=args.limit, bootstrap=args.bootstrap, seed=args.seed,
                             progress=progress, use_disk_cache=not args.no_disk_cache)
    card = result["card"]
    if args.json:
        print(json.dumps({**result, "card": {**asdict(card), "invalid_share": card.invalid_share}}, indent=2,
                         default=str))
        return 0
    table = Table(title=text(f"the study's task: {card.judge} under the study's judges, on the same triplets"))
    for col in columns():
        table.add_column(col)
    last_ref = None
    for r in result["rows"]:
        if last_ref is not None and r["reference"] != last_ref:
            table.add_section()
        last_ref = r["reference"]
        table.add_row(*(text(x) for x in row_cells(r)))
    console = terminal()
    console.print(table)
    if card.position_bias:
        console.print(text("position bias: " + json.dumps(card.position_bias)))
    if card.note:
        err.print(text(f"note: {card.note}"))
    console.print(text(f"wrote {args.out}/study-judge.json and {args.out}/study-judge.md"
                       + (f"; card stored in {args.store}" if args.store else "")))
    return 0


def hh_audit_command(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rich.table import Table

    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.progress import RichProgress
    from harness.hh_audit import share_text

    err = terminal(stderr=True)
    progress = None if args.json else RichProgress(err)
    result = api.hh_audit(args.file, args.judge, mode=args.mode, base_url=args.base_url, limit=args.limit,
                          progress=progress, use_disk_cache=not args.no_disk_cache)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
        return 0
    table = Table(title=text(f"HH-RLHF audit of {result.pairs} pair(s) by {result.judge} ({result.mode} mode)"))
    table.add_column(text("figure"))
    table.add_column(text("share [exact 95% interval] (k/n)"), justify="right")
    table.add_row(text("chosen reply judged harmful"), text(share_text(result.chosen_harmful)))
    table.add_row(text("rejected reply judged harmful"), text(share_text(result.rejected_harmful)))
    table.add_row(text("both replies judged harmful"), text(share_text(result.both_harmful)))
    table.add_row(text("judge ties the two replies (no verdict)"), text(share_text(result.tie_share)))
    table.add_row(text("judge agrees with the crowd (rejected is more harmful), of the pairs not tied"),
                  text(share_text(result.agreement)))
    console = terminal()
    console.print(table)
    console.print(text(f"{result.judged} judge rating(s), {result.invalid} invalid (never counted as harmless); "
                       f"{result.ties} tie(s) left out of the agreement"))
    if result.rejected:
        err.print(text(f"{len(result.rejected)} line(s) of {args.file} rejected by the importer, not audited; first: "
                       f"{result.rejected[0]}"))
    if result.note:
        err.print(text(f"note: {result.note}"))
    return 0
