"""Seeded samples stratified over strata: what `--limit N` takes from a prompt set, a calibration set or the
study's triplets, instead of the first N (which on the default set is one category and no benign control).

Every stratum gets one item while N allows (the largest strata first when N is smaller than their number); the
rest of N is shared out in proportion to the strata's remaining sizes (largest remainder); within a stratum the
items are a seeded random draw. The sample keeps the items' own order, and the same seed always takes the same
items, so a run with `--limit` resumes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def allocation(sizes: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """How many items each stratum gives to a sample of n (see the module docstring)."""
    names = sorted(sizes)
    rng.shuffle(names)  # ties between equal strata fall by the seed, not by name
    names.sort(key=lambda s: -sizes[s])
    if n <= len(names):
        return {s: int(i < n) for i, s in enumerate(names)}
    take = {s: 1 for s in names}
    left = n - len(names)
    spare = {s: sizes[s] - 1 for s in names}
    total = sum(spare.values())
    if total <= 0:
        return take
    shares = {s: left * spare[s] / total for s in names}
    for s in names:
        take[s] += min(spare[s], int(shares[s]))
    order = sorted(names, key=lambda s: -(shares[s] - int(shares[s])))
    i = 0
    while sum(take.values()) < min(n, sum(sizes.values())) and i < 10 * len(order):
        s = order[i % len(order)]
        if take[s] < sizes[s]:
            take[s] += 1
        i += 1
    return take


def stratified(items: Sequence[T], n: int, stratum: Callable[[T], str], seed: int = 0) -> list[T]:
    """A seeded sample of n items stratified by `stratum`, in the items' own order (all of them when n is larger)."""
    if n >= len(items):
        return list(items)
    by: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by.setdefault(stratum(item), []).append(i)
    rng = random.Random(seed)
    take = allocation({s: len(ix) for s, ix in by.items()}, n, rng)
    chosen: list[int] = []
    for s in sorted(by):
        chosen += rng.sample(by[s], take[s])
    return [items[i] for i in sorted(chosen)]


def covered(items: Sequence[T], stratum: Callable[[T], str]) -> dict[str, int]:
    """How many items of each stratum a sample holds."""
    out: dict[str, int] = {}
    for item in items:
        key = stratum(item)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))
