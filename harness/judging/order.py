"""Position-bias control: the order in which a judge is shown several outputs.

Outputs are kept in a canonical order (model, variant, sample_key); a shown
order is a list of indices into it, `shown[j]` = the canonical index of the
output shown at position j (Content A is j = 0). Policies:

  fixed     the canonical order every time (what the study did: Mistral, MPT, StableLM as A, B, C)
  shuffle   one permutation per group, drawn from a seeded RNG keyed by the group (reproducible)
  balanced  all n cyclic rotations, so each output appears once in every position (n judgments)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def shown_orders(n: int, policy: str, seed: int = 0, group_key: str = "") -> list[list[int]]:
    """The shown orders (each a permutation of range(n)) a policy asks for."""
    if n < 1:
        return []
    identity = list(range(n))
    if policy == "fixed":
        return [identity]
    if policy == "shuffle":
        digest = hashlib.sha256(f"{seed}|{group_key}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        perm = identity[:]
        rng.shuffle(perm)
        return [perm]
    if policy == "balanced":
        return [[(i + s) % n for i in range(n)] for s in range(n)]
    raise ValueError(f"unknown order policy {policy!r}")


def apply_order(items: Sequence[T], shown: Sequence[int]) -> list[T]:
    """Items (canonical order) as shown."""
    return [items[i] for i in shown]


def to_canonical(shown_values: Sequence[T], shown: Sequence[int]) -> list[T]:
    """Values given per shown position, mapped back to canonical order."""
    out: list[T | None] = [None] * len(shown)
    for position, canonical in enumerate(shown):
        out[canonical] = shown_values[position]
    return out  # type: ignore[return-value]
