"""Judging modes as objects: one module per mode, found by name through a registry.

A `Mode` says everything that differs between ways of asking a judge:

  plan       which outputs are judged together (one, a prompt's group, or a pair) and in which
             shown orders (position-bias control, harness.judging.order)
  schema     the JSON schema of an answer (structured output, grammars)
  messages   the chat messages of a request (a rubric rendered with the outputs and the conversation's
             earlier turns, or the moderation conversation of every turn for guard)
  parse      raw answer text -> a value in shown positions, or a parse error
  from_shown / to_shown   the value between shown positions and canonical order (stored judgments
             are canonical; a judgment shared by two tasks is mapped onto each through its order)
  ratings    the judgments of a group -> one `Rating` per output (the rate rule of the mode: what
             `harmful` and `code` mean)

Adding a mode is one new module here that defines `MODE`; `MODES.get(name)` finds it. Which judge kinds can
use a mode is the kind's to say (`JudgeConfig.takes_mode`, harness.judging.kinds); a model-asking kind takes
every mode.
How each mode becomes ratings is in each module's docstring and in harness/judging/__init__.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness import keys
from harness.judging.groups import Group, JudgeTask
from harness.judging.order import shown_orders
from harness.judging.parsing import Parsed
from harness.judging.rubrics import labels_for, truncate
from harness.records import Generation, Judgment, Rating, replace
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.rubrics import Rubric


@dataclass(frozen=True)
class GroupPlan:
    """The tasks of one group, or why it cannot be judged in this mode ('singleton' | 'oversize')."""

    tasks: list[JudgeTask] = field(default_factory=list)
    skipped: str | None = None


class Mode:
    name: ClassVar[str]
    task: ClassVar[str]  # the ratings task it writes
    grouped: ClassVar[bool] = False  # outputs of one prompt judged together
    default_rubric: ClassVar[str | None] = None  # under judges/
    takes_digit: ClassVar[bool] = False  # a one-digit answer constraint fits this mode

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, group: Group, order: str, order_seed: int, max_outputs: int) -> GroupPlan:
        """One task per output (single-output modes)."""
        return GroupPlan([JudgeTask(self.name, group, group.generations, [0])])

    # -- asking ------------------------------------------------------------------------------------
    def schema(self, k: int, cfg: JudgeConfig) -> dict[str, Any] | None:
        return None

    def messages(self, task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None, texts: list[str],
                 output_format: str) -> list[dict[str, str]]:
        """The rubric rendered with the prompt, the conversation's earlier turns (cut like the outputs) and the
        outputs in shown order."""
        assert rubric is not None, f"mode {self.name} needs a rubric"
        labels = labels_for(len(texts))
        history = [{"role": role, "text": truncate(text, cfg.max_output_chars)} for role, text in task.group.history]
        return rubric.render(prompt=task.group.prompt, outputs=[{"label": lab, "text": t} for lab, t in
                                                                zip(labels, texts)],
                             output=texts[0], k=len(texts), labels=labels, output_format=output_format,
                             max_score=cfg.max_score, history=history)

    # -- reading answers -----------------------------------------------------------------------------
    def parse(self, text: str, k: int, cfg: JudgeConfig) -> Parsed:
        raise NotImplementedError

    def from_shown(self, value: dict[str, Any], task: JudgeTask) -> dict[str, Any]:
        """A parsed answer (in shown positions) in canonical order."""
        return dict(value)

    def to_shown(self, parsed: dict[str, Any], shown_order: Sequence[int]) -> dict[str, Any]:
        """A stored (canonical) answer back in the positions it was shown in."""
        return dict(parsed)

    def view(self, judgment: Judgment, task: JudgeTask) -> Judgment:
        """A judgment as seen by one task. Tasks with identical inputs (same prompt and outputs in the same
        shown order, e.g. two variants that wrote the same text) share one judgment; its answer is
        position-based, so it is mapped onto this task's outputs through this task's shown order."""
        parsed = judgment.parsed
        if parsed is not None and list(judgment.sample_keys or []) != task.sample_keys:
            parsed = self.from_shown(self.to_shown(parsed, judgment.shown_order or list(range(task.k))), task)
        return replace(judgment, sample_keys=task.sample_keys, shown_order=task.shown_order, parsed=parsed)

    def ratings(self, cfg: JudgeConfig, group: Group, judgments: list[Judgment]) -> list[Rating]:
        raise NotImplementedError


def why_invalid(j: Judgment | None) -> str:
    if j is None:
        return "not judged"
    if j.error:
        return f"judge request failed: {j.error}"
    return f"unparseable judge answer: {j.parse_error or 'no result'}"


def valid_judgments(judgments: list[Judgment]) -> list[Judgment]:
    return [j for j in judgments if j.ok]


def judge_rating(cfg_name: str, task: str, group: Group, g: Generation, *, code: float | None = None,
                 label: str | None = None, harmful: int | None = None, valid: bool = True,
                 error: str | None = None, judgment_key: str | None = None,
                 extra: dict[str, Any] | None = None) -> Rating:
    """One of our judges' ratings of one output."""
    return Rating(
        rating_key=keys.judge_rating_key(cfg_name, task, group.item_id, g.sample_key),
        source=f"judge:{cfg_name}",
        rater=cfg_name,
        rater_kind="judge",
        annotator=None,
        task=task,
        item_id=group.item_id,
        prompt_id=g.prompt_id,
        category=g.category,
        model=g.model,
        variant=g.variant,
        sample_key=g.sample_key,
        code=code if valid else None,
        label=label if valid else None,
        harmful=harmful if valid else None,
        valid=valid,
        error=None if valid else error,
        judgment_key=judgment_key,
        extra=extra,
    )


def invalid_ratings(cfg: JudgeConfig, task: str, group: Group, judgments: list[Judgment]) -> list[Rating]:
    """Every output of the group rated invalid, with the first judgment's reason."""
    first = judgments[0] if judgments else None
    return [judge_rating(cfg.name, task, group, g, valid=False, error=why_invalid(first),
                         judgment_key=first.judgment_key if first else None) for g in group.generations]


class SingleOutputMode(Mode):
    """Modes that judge one output at a time: an output's rating comes from its first valid judgment, and an
    output without one is rated invalid (never harmless)."""

    def ratings(self, cfg: JudgeConfig, group: Group, judgments: list[Judgment]) -> list[Rating]:
        valid = valid_judgments(judgments)
        if not valid:
            return invalid_ratings(cfg, self.task, group, judgments)
        return [self.rating(cfg, group, valid[0], valid[0].parsed or {})]

    def rating(self, cfg: JudgeConfig, group: Group, judgment: Judgment, parsed: dict[str, Any]) -> Rating:
        raise NotImplementedError


def label_schema(classes: Sequence[str]) -> dict[str, Any]:
    """The answer schema of a label mode: {"label": one of `classes`}."""
    props = {"label": {"type": "string", "enum": list(classes)}}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


class GroupedMode(Mode):
    """Modes that judge a prompt's outputs together (rank) or in pairs (pairwise)."""

    grouped = True

    def orders(self, n: int, order: str, order_seed: int, key: str) -> list[list[int]]:
        return shown_orders(n, order, order_seed, key)


MODES: Registry[Mode] = Registry("judging mode", package="harness.judging.modes", attribute="MODE")


def get_mode(name: str) -> Mode:
    return MODES.get(name)


def mode_names() -> list[str]:
    return MODES.names()
