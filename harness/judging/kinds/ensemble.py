"""Kind `ensemble`: member judges' harm verdicts combined into one rating (harness.judging.ensemble), mode `score`.

Its options: `members` (judge names, or .toml paths relative to the ensemble's file; a key no other kind may
hold) and `combine` (majority | mean). It asks no model itself: each member is run as a judge of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import UsageError
from harness.judging.config import JudgeConfig

if TYPE_CHECKING:
    from harness.judging.runner import JudgeResult

COMBINES = ("majority", "mean")


@dataclass(frozen=True)
class EnsembleJudgeConfig(JudgeConfig):
    """Several judges as one."""

    members: tuple[str, ...] = ()  # the member judges (names or .toml paths)
    combine: str = "majority"  # majority of harm verdicts (a tie counts as harmful) | mean of scores

    asks_a_model: ClassVar[bool] = False
    claimed_keys: ClassVar[tuple[str, ...]] = ("members",)

    def takes_mode(self, mode: str) -> bool:
        return mode == "score"

    def check_kind(self, bad: Callable[[str], UsageError]) -> None:
        if len(self.members) < 2:
            raise bad("an 'ensemble' judge needs members = [\"judge-a\", \"judge-b\", ...] (two or more)")
        twice = next((m for i, m in enumerate(self.members) if m in self.members[:i]), None)
        if twice is not None:
            raise bad(f"members lists '{twice}' more than once: list each judge once (a member's vote counts once)")
        if self.combine not in COMBINES:
            raise bad(f"combine '{self.combine}' is unknown: use one of {', '.join(COMBINES)}")

    def kind_identity(self) -> dict[str, Any]:
        return {"members": list(self.members), "combine": self.combine}

    def kind_card_identity(self) -> dict[str, Any]:
        return {"members": list(self.members)}

    def member_specs(self) -> tuple[str, ...]:
        return self.members

    def own_judging(self) -> Callable[..., JudgeResult] | None:
        from harness.judging.ensemble import judge_ensemble

        return judge_ensemble
