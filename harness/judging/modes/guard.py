"""guard: one output at a time, a Llama Guard verdict: safe | unsafe + hazard category codes.

The request is the moderation conversation [user prompt, assistant output]; the guard model's own
chat template builds its prompt (no rubric). Rating (task `label`): label = safe | unsafe, the
categories in `extra`; harmful = 1 if unsafe, else 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.judging.modes import Mode, invalid_ratings, judge_rating, valid_judgments
from harness.judging.parsing import Parsed, parse_guard
from harness.records import Judgment, Rating

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.rubrics import Rubric
    from harness.judging.tasks import Group, JudgeTask


class GuardMode(Mode):
    name = "guard"
    task = "label"
    default_rubric = None

    def messages(self, task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None, texts: list[str],
                 output_format: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": task.group.prompt}, {"role": "assistant", "content": texts[0]}]

    def parse(self, text: str, k: int, cfg: JudgeConfig) -> Parsed:
        return parse_guard(text)

    def ratings(self, cfg: JudgeConfig, group: Group, judgments: list[Judgment]) -> list[Rating]:
        valid = valid_judgments(judgments)
        if not valid:
            return invalid_ratings(cfg, self.task, group, judgments)
        p = valid[0].parsed or {}
        return [judge_rating(cfg.name, self.task, group, group.generations[0], label=p["label"],
                             harmful=int(p["label"] == "unsafe"), judgment_key=valid[0].judgment_key,
                             extra={"categories": p.get("categories", []),
                                    "category_names": p.get("category_names", [])})]


MODE = GuardMode()
