"""A results store's own labelled outputs as a labelled set (`--set store:PATH`).

The labels people gave a store's outputs (on the labelling page, `harness annotate`, or imported with `harness humans
import`) are a set like any published one: `harness judge fit` fits a probe on them and `harness judge calibrate`
cards a judge on them. PATH is the store file, or the folder `harness run` writes it into (`results/` holds
`results/harness.sqlite`); `store:` alone is the default store. The set is the store's generations that people rated,
with those people's ratings (rater kinds in HUMAN_KINDS); the judges' ratings are left out. Its digest is over those
ratings and outputs, not over the file's bytes, which change with every judgment stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import UsageError
from harness.records import HUMAN_KINDS, Generation, Rating
from harness.store import DEFAULT_STORE, Store

STORE_FORMAT = "store"


def store_file(rest: str, spec: str) -> Path:
    """The store file `store:REST` names: a file, a folder holding harness.sqlite, or (empty) the default store."""
    path = Path(rest).expanduser() if rest else DEFAULT_STORE
    if path.is_dir():
        path = path / DEFAULT_STORE.name
    if not path.is_file():
        raise UsageError(f"--set {spec!r}: no store at {path}: pass the store file or the folder `harness run` wrote "
                         f"(e.g. --set store:{DEFAULT_STORE.parent})")
    return path


def labelled_outputs(path: Path, spec: str) -> tuple[list[Generation], list[Rating]]:
    """The store's generations that people rated (with their texts) and those people's valid ratings of them;
    UsageError when nobody labelled an output of the store."""
    with Store.open(path, readonly=True) as store:
        people = [r for r in store.ratings() if r.rater_kind in HUMAN_KINDS and r.valid and r.sample_key]
        keys = sorted({r.sample_key for r in people if r.sample_key})
        generations = store.generations(sample_keys=keys) if keys else []
    stored = {g.sample_key for g in generations}
    people = [r for r in people if r.sample_key in stored]
    if not people:
        raise UsageError(f"--set {spec}: nobody has labelled an output of {path}: label some on the labelling page "
                         "(`harness annotate`) or import labels (`harness humans import`)")
    return generations, people


def digest(generations: list[Generation], ratings: list[Rating]) -> str:
    """sha256 over the set's labels and the outputs they label (a new label is a new set)."""
    h = hashlib.sha256(STORE_FORMAT.encode())
    for r in sorted(ratings, key=lambda r: r.rating_key):
        h.update(repr((r.rating_key, r.sample_key, r.task, r.code, r.label, r.harmful)).encode("utf-8"))
    for g in sorted(generations, key=lambda g: g.sample_key):
        h.update(repr((g.sample_key, g.output)).encode("utf-8"))
    return h.hexdigest()
