"""`harness leaderboard`: the deployable-candidates query: variants that meet RAM, speed and harm limits."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from harness.errors import NONE_PASS_EXIT, UsageError

EXIT_CODES = (f"exit codes: 0 at least one variant meets the limits (or none were given), {NONE_PASS_EXIT} limits were "
              "given and no variant meets them (a CI gate), 2 bad input, 1 any other error")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("leaderboard", help="list variants that meet RAM, speed and harm limits, best first",
                       description="List every variant with its harm and cost, those that meet the limits first "
                                   "(lowest harm, then highest decode tok/s), with the reason each other one fails. "
                                   "The store is opened read-only.", epilog=EXIT_CODES)
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--device", default=None, metavar="NAME", help="only this device profile's generations")
    p.add_argument("--max-ram", default=None, metavar="SIZE", help="peak RAM (RSS) limit, e.g. 4GB or 512MiB")
    p.add_argument("--min-tps", type=float, default=None, metavar="TPS", help="minimum median decode tokens/s")
    p.add_argument("--max-harm", default=None, metavar="RATE",
                   help="maximum harm rate, e.g. 0.05 or 5%%: the upper end of the rate's 95%% interval must be below it")
    p.add_argument("--max-qos-gap", default=None, metavar="GAP",
                   help="maximum gap in refusal rate between the groups of any axis (quality of service, group-"
                        "templated prompts such as --prompts qos), e.g. 0.1 or 10%%")
    p.add_argument("--max-asr", default=None, metavar="RATE",
                   help="maximum attack success rate, e.g. 0.2 or 20%%: the upper end of the worst attack's harm "
                        "interval must be below it (runs with --attack)")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # always on now: see --max-harm
    p.add_argument("--judge", dest="rater", help=argparse.SUPPRESS)  # the old name of --rater
    p.add_argument("--rater", dest="rater", default=None, metavar="RATER",
                   help="rater whose harm rate counts (default: the rater with most valid ratings; humans on a tie)")
    p.add_argument("--card", default=None, metavar="NAME",
                   help="the judge card that corrects harm rates: its set name or the start of its key (see "
                        "`harness judge cards`); default: the card of the rater's judge configuration compared on "
                        "the most outputs")
    p.add_argument("--run", action="append", default=[], metavar="ID", help="only generations of this run (repeatable)")
    p.add_argument("--include-flagged", action="store_true",
                   help="count warm-up and contended measurements in the cost medians (left out by default)")
    p.add_argument("--wide", action="store_true", help="every figure in the table (default: the compact table)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=leaderboard_command)


def parse_rate(text: str, option: str = "--max-harm") -> float:
    """'0.05' or '5%' -> 0.05; must lie in [0, 1]."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a number: write a rate like 0.05 or 5%") from exc
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise UsageError(f"{option} {text!r} is outside 0..1: write a rate like 0.05 or 5%")
    return value


def leaderboard_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.tables import leaderboard_table, print_table, terminal_width

    candidates = api.leaderboard(args.store, device=args.device, max_ram=args.max_ram, min_tps=args.min_tps,
                                 max_harm=parse_rate(args.max_harm) if args.max_harm is not None else None,
                                 rater=args.rater, run_ids=args.run or None, card=args.card,
                                 include_flagged=args.include_flagged,
                                 max_qos_gap=(parse_rate(args.max_qos_gap, "--max-qos-gap")
                                              if args.max_qos_gap is not None else None),
                                 max_asr=parse_rate(args.max_asr, "--max-asr") if args.max_asr is not None else None)
    if args.json:
        print(json.dumps([c.as_json() for c in candidates], indent=2))
    else:
        print_table(leaderboard_table(candidates, wide=args.wide, limits=limited(args), width=terminal_width(),
                                      include_flagged=args.include_flagged), wide=args.wide)
    return gate(candidates, limited(args))


def gate(candidates: list[Any], limits: bool) -> int:
    """The exit code of a query: NONE_PASS_EXIT when limits were given and no variant meets them (stderr says so)."""
    if not limits or any(c.passes for c in candidates):
        return 0
    print(f"harness: no variant meets the limits (exit {NONE_PASS_EXIT}): see why under the table or in the "
          "`reasons` of --json", file=sys.stderr)
    return NONE_PASS_EXIT


def limited(args: argparse.Namespace) -> bool:
    """Whether the query sets any limit (the table then says which variants meet them)."""
    return any(v is not None for v in (args.max_ram, args.min_tps, args.max_harm, args.max_qos_gap, args.max_asr))
