"""harness: benchmark small LLMs for harm and cost on edge devices.

Importing the package is cheap: the Python API (run, judge, report, leaderboard and their result
types, harness.api) is loaded on first use, and backends, judges and analysis stacks are imported
lazily by the modules that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.version import __version__

_API = {
    "run": "harness.api",
    "judge": "harness.api",
    "report": "harness.api",
    "leaderboard": "harness.api",
    "calibrate": "harness.api",
    "cards": "harness.api",
    "study_judge": "harness.api",
    "JudgeCard": "harness.records",
    "RunResult": "harness.api",
    "ReportResult": "harness.api",
    "JudgeResult": "harness.judging.runner",
    "LeaderboardRow": "harness.rates",
    "Generation": "harness.records",
    "Judgment": "harness.records",
    "Rating": "harness.records",
    "Run": "harness.records",
    "ModelLoad": "harness.records",
    "Store": "harness.store",
    "UsageError": "harness.errors",
}

if TYPE_CHECKING:
    from harness.api import ReportResult, RunResult, calibrate, cards, judge, leaderboard, report, run, study_judge
    from harness.errors import UsageError
    from harness.judging.runner import JudgeResult
    from harness.rates import LeaderboardRow
    from harness.records import Generation, JudgeCard, Judgment, ModelLoad, Rating, Run
    from harness.store import Store


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [
    "Generation", "JudgeCard", "JudgeResult", "Judgment", "LeaderboardRow", "ModelLoad", "Rating", "ReportResult",
    "Run", "RunResult", "Store", "UsageError", "__version__", "calibrate", "cards", "judge", "leaderboard", "report",
    "run", "study_judge",
]
