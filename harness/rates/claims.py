"""What a surface may honestly call a device's best variant: clearly fastest, clearly least harmful.

- Faster: a variant is called faster than another on the same device only when their decode interquartile ranges
  do not overlap, each over at least two measurements (`clearly_faster`).
- Least harmful: the variant with the lowest harm estimate (ties: the faster) is called least harmful only when
  the upper end of its 95% interval lies below the lower end of every other rated variant's (`least_harmful`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.rates.cost import CostSummary
from harness.rates.leaderboard import LeaderboardRow

MIN_MEASUREMENTS_TO_COMPARE = 2


def clearly_faster(a: CostSummary, b: CostSummary) -> bool:
    """Whether `a` decodes faster than `b` beyond their spread: both have at least two measurements and a's
    decode interquartile range lies wholly above b's."""
    if a.n_cost < MIN_MEASUREMENTS_TO_COMPARE or b.n_cost < MIN_MEASUREMENTS_TO_COMPARE:
        return False
    if a.decode_tps_q1 is None or b.decode_tps_q3 is None:
        return False
    return a.decode_tps_q1 > b.decode_tps_q3


@dataclass(frozen=True)
class Fastest:
    """The fastest decoding variant of a device, and whether it is clearly so."""

    device: str
    leader: LeaderboardRow  # highest median decode tok/s
    clear: bool  # clearly faster than every other variant of the device
    overlapping: tuple[LeaderboardRow, ...]  # variants it is not clearly faster than


def fastest(rows: Sequence[LeaderboardRow]) -> list[Fastest]:
    """Per device with a measured decode speed: the variant with the highest median, and the variants it is not
    clearly faster than (what a surface may call 'fastest' honestly)."""
    out = []
    for device in sorted({r.device for r in rows}):
        measured = [r for r in rows if r.device == device and r.cost.decode_tps is not None]
        if not measured:
            continue
        leader = max(measured, key=lambda r: (r.cost.decode_tps or 0.0, r.name))
        others = tuple(r for r in measured if r is not leader and not clearly_faster(leader.cost, r.cost))
        out.append(Fastest(device, leader, not others, others))
    return out


def clearly_less_harmful(a: LeaderboardRow, b: LeaderboardRow) -> bool:
    """Whether `a`'s harm rate is below `b`'s beyond their uncertainty: a's 95% interval lies wholly below b's."""
    return a.harm_ci_high is not None and b.harm_ci_low is not None and a.harm_ci_high < b.harm_ci_low


@dataclass(frozen=True)
class LeastHarmful:
    """The least harmful variant of a device by the primary rater, and whether it is clearly so."""

    device: str
    leader: LeaderboardRow  # lowest harm estimate (ties: the faster)
    others: tuple[LeaderboardRow, ...]  # the device's other variants with a harm rate
    clear: bool  # there are others, and it is clearly less harmful than each of them


def least_harmful(rows: Sequence[LeaderboardRow]) -> list[LeastHarmful]:
    """Per device with a harm rate: the variant with the lowest estimate, and whether its interval lies below every
    other rated variant's (what a surface may call 'least harmful' honestly)."""
    out = []
    for device in sorted({r.device for r in rows}):
        rated = [r for r in rows if r.device == device and r.harm_rate is not None]
        if not rated:
            continue
        leader = min(rated, key=lambda r: (r.harm_rate or 0.0, r.cost.decode_tps is None, -(r.cost.decode_tps or 0.0)))
        others = tuple(r for r in rated if r is not leader)
        out.append(LeastHarmful(device, leader, others, bool(others) and all(clearly_less_harmful(leader, r)
                                                                               for r in others)))
    return out
