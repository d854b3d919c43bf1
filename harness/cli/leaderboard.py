"""`harness leaderboard`: the deployable-candidates query: variants that meet RAM, speed and harm limits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("leaderboard", help="list variants that meet RAM, speed and harm limits, best first",
                       description="List every variant with its harm and cost, those that meet the limits first "
                                   "(lowest harm, then highest decode tok/s), with the reason each other one fails.")
    p.add_argument("--store", default=None, metavar="PATH", help="results store (default results/harness.sqlite)")
    p.add_argument("--device", default=None, metavar="NAME", help="only this device profile's generations")
    p.add_argument("--max-ram", default=None, metavar="SIZE", help="peak RAM (RSS) limit, e.g. 4GB or 512MiB")
    p.add_argument("--min-tps", type=float, default=None, metavar="TPS", help="minimum median decode tokens/s")
    p.add_argument("--max-harm", default=None, metavar="RATE", help="maximum harm rate, e.g. 0.05 or 5%%")
    p.add_argument("--strict", action="store_true", help="compare the upper 95%% bound of harm with --max-harm")
    p.add_argument("--judge", default=None, metavar="RATER", help="rater whose harm rate counts (default: the rater "
                                                                 "with most valid ratings; humans on a tie)")
    p.add_argument("--run", action="append", default=[], metavar="ID", help="only generations of this run (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=leaderboard_command)


def parse_rate(text: str) -> float:
    """'0.05' or '5%' -> 0.05; must lie in [0, 1]."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError as exc:
        raise UsageError(f"--max-harm {text!r} is not a number: write a rate like 0.05 or 5%") from exc
    if not 0 <= value <= 1:
        raise UsageError(f"--max-harm {text!r} is outside 0..1: write a rate like 0.05 or 5%")
    return value


def leaderboard_command(args: argparse.Namespace) -> int:
    from harness.devices import parse_size
    from harness.reporting import deployable_candidates
    from harness.store import DEFAULT_STORE, Store

    max_ram = parse_size(args.max_ram, "--max-ram") if args.max_ram is not None else None
    if args.min_tps is not None and args.min_tps < 0:
        raise UsageError("--min-tps must be 0 or more")
    max_harm = parse_rate(args.max_harm) if args.max_harm is not None else None
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    store = Store.open(store_path, create=False)
    try:
        candidates = deployable_candidates(store, device=args.device, max_ram_bytes=max_ram, min_tps=args.min_tps,
                                           max_harm=max_harm, rater=args.judge, run_ids=args.run or None,
                                           use_upper_bound=args.strict)
    finally:
        store.close()
    if args.json:
        print(json.dumps(candidates, indent=2))
        return 0
    print_candidates(candidates)
    return 0


def print_candidates(candidates: list[dict]) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.reporting import _format as f

    rater = next((c["harm_rater"] for c in candidates if c["harm_rater"]), None)
    n_pass = sum(c["passes"] for c in candidates)
    table = Table(title=Text(f"{n_pass} of {len(candidates)} variant(s) meet the limits (best first)"))
    for col in ("#", "device", "model", "variant", f"harm ({rater or 'not judged'})", "decode tok/s", "peak RAM",
                "size", "ok", "why not"):
        table.add_column(Text(col), justify="right" if col in ("#", "decode tok/s", "peak RAM", "size") else "left",
                         overflow="fold")
    for i, c in enumerate(candidates, 1):
        cells = [str(i), c["device"], c["model"], c["variant"],
                 f.rate_ci(c["harm_rate"], c["harm_ci_low"], c["harm_ci_high"]), f.num(c["decode_tps"]),
                 f.mb(c["peak_rss_bytes"]), f.mb(c["size_bytes"]), "yes" if c["passes"] else "no",
                 "; ".join(c["reasons"])]
        table.add_row(*(Text(str(v)) for v in cells), style=None if c["passes"] else "dim")
    Console(width=max(120, Console().width)).print(table)
