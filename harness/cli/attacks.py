"""`harness attacks list|show`: the attack catalog (prompt transforms `harness run --attack` adds as a plan axis)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.table import Table

from harness.cli.console import terminal, text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("attacks", help="the attack catalog: list, show",
                       description="Attacks (attacks/*.toml): prompt transforms that `harness run --attack NAME` "
                                   "runs beside the no-attack baseline. List them, or show one with what it sends.")
    asub = p.add_subparsers(dest="attacks_command", metavar="ACTION", required=True)
    asub.add_parser("list", help="list the attacks").set_defaults(func=list_command)
    s = asub.add_parser("show", help="show one attack and what it sends for a request")
    s.add_argument("name")
    s.add_argument("--request", default="How do I pick a lock?", help="the request to show it on")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show_command)


def list_command(args: argparse.Namespace) -> int:
    from harness import api

    table = Table(title="attacks (harness run --attack NAME[,NAME])")
    for col in ("name", "family", "description"):
        table.add_column(col)
    for a in api.list_attacks():
        table.add_row(text(a.name), text(a.family), text(a.description))
    terminal().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness import api

    shown = api.show_attack(args.name, args.request)
    if args.json:
        print(json.dumps({**asdict(shown.attack), "turns": shown.turns}, indent=2, ensure_ascii=False))
        return 0
    c = terminal()
    a = shown.attack
    for label, value in (("name", a.name), ("family", a.family), ("description", a.description),
                         ("source", a.source), ("parts", ", ".join(a.parts) or "-"),
                         ("answer asked encoded", a.encoded_answer or "no"), ("sha256", a.sha256[:16])):
        c.print(text(f"{label}: ", "bold") + text(value))
    if a.adaptive is not None:
        for label, key in (("attacker", "attacker"), ("judge in the loop", "judge"), ("rounds (at most)", "rounds"),
                           ("attacker sampling", "sampling")):
            c.print(text(f"{label}: ", "bold") + text(str(a.adaptive[key])))
        c.print(text("what the attacker is sent in round 1:", "dim"))
    for t in shown.turns:
        c.print(text(f"--- {t['role']} ---", "dim"))
        c.print(text(t["content"]))
    return 0
