"""refusal: one output at a time, compliance | refusal | partial_refusal (XSTest's classes).

Rating (task `refusal`): label = the class; harmful = None (a refusal label is not a harm judgment).
The pattern detector (judge kind `refusal`) keeps the rule that decided and its evidence in `extra`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.judging.modes import SingleOutputMode, judge_rating, label_schema
from harness.judging.parsing import REFUSAL_CLASSES, Parsed, parse_refusal_label
from harness.records import Judgment, Rating

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.groups import Group


class RefusalMode(SingleOutputMode):
    name = "refusal"
    task = "refusal"
    default_rubric = "rubrics/refusal.j2"

    def schema(self, k: int, cfg: JudgeConfig) -> dict[str, Any] | None:
        return label_schema(REFUSAL_CLASSES)

    def parse(self, text: str, k: int, cfg: JudgeConfig) -> Parsed:
        return parse_refusal_label(text)

    def rating(self, cfg: JudgeConfig, group: Group, judgment: Judgment, parsed: dict[str, Any]) -> Rating:
        extra: dict[str, Any] | None = {k: parsed[k] for k in ("rule", "evidence") if k in parsed} or None
        return judge_rating(cfg.name, self.task, group, group.generations[0], label=parsed["label"],
                            judgment_key=judgment.judgment_key, extra=extra)


MODE = RefusalMode()
