"""What to judge: generations grouped by prompt (harness.judging.groups) and turned into judge tasks by a mode.

Groups a mode cannot judge (one output; more than the judge shows at once) are counted and reported, never
silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.judging.groups import Group, JudgeTask, group_generations, group_key
from harness.judging.modes import Mode, get_mode
from harness.records import Generation

__all__ = ["Group", "JudgeTask", "TaskPlan", "group_generations", "group_key", "plan_tasks"]


@dataclass
class TaskPlan:
    tasks: list[JudgeTask] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    n_singletons: int = 0  # rank/pairwise groups of one output (cannot be compared)
    n_oversize: int = 0  # groups with more outputs than the judge shows at once
    n_generation_errors: int = 0  # generations without an output (failed runs)


def plan_tasks(rows: list[Generation], mode: Mode | str, *, order: str = "fixed", order_seed: int = 0,
               max_outputs: int = 8) -> TaskPlan:
    """The judge tasks for these generations in this mode (a Mode, or its name)."""
    if isinstance(mode, str):
        mode = get_mode(mode)
    plan = TaskPlan()
    usable = []
    for g in rows:
        if g.error or g.output is None:
            plan.n_generation_errors += 1
        else:
            usable.append(g)
    for group in group_generations(usable, mode.grouped):
        gp = mode.plan(group, order, order_seed, max_outputs)
        if gp.skipped == "singleton":
            plan.n_singletons += 1
        elif gp.skipped == "oversize":
            plan.n_oversize += 1
        else:
            plan.groups.append(group)
            plan.tasks += gp.tasks
    return plan
