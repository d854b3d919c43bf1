"""The user's judge-card library: a judge configuration calibrated once corrects harm rates in every store.

`harness judge calibrate` stores each card in the results store it was given and in this library, a store file
of its own (`$HARNESS_CARDS`, default `$XDG_CONFIG_HOME/harness/cards.sqlite`, i.e. ~/.config/harness). A card is
keyed by the judge configuration's identity, the set's contents and the mode (records.JudgeCard.card_key), so it
only ever corrects ratings made by that same configuration. `harness judge cards export --out FILE` writes cards
as a versioned JSON document; `harness judge cards import FILE` reads one into the library (a document of another
format version, or a card with a field of the wrong type, is refused whole).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import jsontext
from harness.catalog import default_user_catalog
from harness.errors import UsageError
from harness.outputs import atomic_write, output_file
from harness.records import JudgeCard, columns
from harness.store import Store

FORMAT = "harness-judge-cards"
VERSION = 1
_TYPES = {"INTEGER": (int,), "REAL": (int, float), "TEXT": (str,)}


def library_path() -> Path:
    env = os.environ.get("HARNESS_CARDS")
    return Path(env).expanduser() if env else default_user_catalog() / "cards.sqlite"


def library_cards() -> list[JudgeCard]:
    """The library's cards (none when it does not exist yet)."""
    path = library_path()
    if not path.exists():
        return []
    with Store.open(path, readonly=True) as st:
        return st.cards()


def save(cards: Sequence[JudgeCard]) -> Path:
    """Add (or replace by key) cards in the library; its path."""
    path = library_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(path) as st:
        st.add(cards, replace=True)
    return path


def merged(*groups: Sequence[JudgeCard]) -> list[JudgeCard]:
    """Cards from several places, one per key (the first place's wins), oldest first."""
    out: dict[str, JudgeCard] = {}
    for group in groups:
        for c in group:
            out.setdefault(c.card_key, c)
    return sorted(out.values(), key=lambda c: c.created_at or 0.0)


def export(cards: Sequence[JudgeCard], out: str | Path, *, force: bool = False) -> Path:
    from dataclasses import asdict

    path = output_file(out, force=force)
    doc = {"format": FORMAT, "version": VERSION, "cards": [asdict(c) for c in cards]}
    with atomic_write(path) as fh:
        json.dump(doc, fh, indent=2, default=str, allow_nan=False)
    return path


def _card(raw: Any, where: str) -> JudgeCard:
    if not isinstance(raw, dict):
        raise UsageError(f"{where} is not an object: export the cards again with `harness judge cards export`")
    cols = {c.name: c for c in columns(JudgeCard)}
    unknown = sorted(set(raw) - set(cols))
    if unknown:
        raise UsageError(f"{where} has unknown field(s) {', '.join(unknown[:5])}: it was not written by this version "
                         "of harness; export the cards again with it")
    for name, col in cols.items():
        v = raw.get(name)
        if v is None:
            if not col.nullable and not col.stamped:
                raise UsageError(f"{where} lacks {name}: export the cards again with `harness judge cards export`")
            continue
        ok = isinstance(v, (dict, list)) if col.json else (isinstance(v, bool) if col.boolean else
                                                           isinstance(v, _TYPES[col.sql_type])
                                                           and not isinstance(v, bool))
        if not ok:
            raise UsageError(f"{where}: {name} = {str(v)[:40]!r} is not a {col.sql_type.lower()}: the file is "
                             "damaged; export the cards again")
    return JudgeCard(**raw)


def read(path: str | Path) -> list[JudgeCard]:
    """The cards of an exported file, checked whole before any is used."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"card file {p} does not exist (or is not a file): pass a file written by "
                         "`harness judge cards export`")
    try:
        doc = jsontext.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"card file {p} is not JSON ({str(exc)[:80]}): pass a file written by "
                         "`harness judge cards export`") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"card file {p} is not a harness judge-card file: pass a file written by "
                         "`harness judge cards export`")
    if doc.get("version") != VERSION:
        raise UsageError(f"card file {p} has format version {str(doc.get('version'))[:20]!r}, this harness reads "
                         f"version {VERSION}: export the cards again with this version")
    cards = doc.get("cards")
    if not isinstance(cards, list):
        raise UsageError(f"card file {p} holds no list of cards: export the cards again")
    return [_card(c, f"card {i + 1} of {p}") for i, c in enumerate(cards)]
