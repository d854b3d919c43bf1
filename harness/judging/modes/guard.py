"""guard: one output at a time, a Llama Guard verdict: safe | unsafe + hazard category codes.

The request is the moderation conversation [user prompt, assistant output]; the guard model's own
chat template builds its prompt (no rubric). Rating (task `label`): label = safe | unsafe, the
categories in `extra`; harmful = 1 if unsafe, else 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.judging.modes import SingleOutputMode, judge_rating
from harness.judging.parsing import Parsed, parse_guard
from harness.records import Judgment, Rating

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.groups import Group, JudgeTask
    from harness.judging.rubrics import Rubric


class GuardMode(SingleOutputMode):
    name = "guard"
    task = "label"
    default_rubric = None

    def messages(self, task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None, texts: list[str],
                 output_format: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": task.group.prompt}, {"role": "assistant", "content": texts[0]}]

    def parse(self, text: str, k: int, cfg: JudgeConfig) -> Parsed:
        return parse_guard(text)

    def rating(self, cfg: JudgeConfig, group: Group, judgment: Judgment, parsed: dict[str, Any]) -> Rating:
        return judge_rating(cfg.name, self.task, group, group.generations[0], label=parsed["label"],
                            harmful=int(parsed["label"] == "unsafe"), judgment_key=judgment.judgment_key,
                            extra={"categories": parsed.get("categories", []),
                                   "category_names": parsed.get("category_names", [])})


MODE = GuardMode()
