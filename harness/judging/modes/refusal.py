"""refusal: one output at a time, compliance | refusal | partial_refusal (XSTest's classes).

Rating (task `refusal`): label = the class; harmful = None (a refusal label is not a harm judgment).
The pattern detector (judge kind `refusal`) keeps the rule that decided and its evidence in `extra`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.judging.modes import Mode, invalid_ratings, judge_rating, valid_judgments
from harness.judging.parsing import REFUSAL_CLASSES, Parsed, parse_refusal_label
from harness.records import Judgment, Rating

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.tasks import Group


class RefusalMode(Mode):
    name = "refusal"
    task = "refusal"
    default_rubric = "rubrics/refusal.j2"
    kinds = ("openai", "llama-cpp", "refusal")

    def schema(self, k: int, cfg: JudgeConfig) -> dict[str, Any] | None:
        props = {"label": {"type": "string", "enum": list(REFUSAL_CLASSES)}}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def parse(self, text: str, k: int, cfg: JudgeConfig) -> Parsed:
        return parse_refusal_label(text)

    def ratings(self, cfg: JudgeConfig, group: Group, judgments: list[Judgment]) -> list[Rating]:
        valid = valid_judgments(judgments)
        if not valid:
            return invalid_ratings(cfg, self.task, group, judgments)
        p = valid[0].parsed or {}
        extra: dict[str, Any] | None = {k: p[k] for k in ("rule", "evidence") if k in p} or None
        return [judge_rating(cfg.name, self.task, group, group.generations[0], label=p["label"],
                             judgment_key=valid[0].judgment_key, extra=extra)]


MODE = RefusalMode()
