"""The Python API: every operation of the command line, each returning typed results.

The implementation sits in private modules (`_core`: run, judge, report, leaderboard, merge, judge cards and the
study's judge benchmark); this file re-exports the public names, so a reader sees the API in one place and the
CLI (harness.cli) calls nothing else.
"""

from __future__ import annotations

from harness.api._core import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_PROMPTS,
    LIMIT_MODES,
    MAX_BOOTSTRAP,
    MAX_NEW_TOKENS,
    MAX_SEED,
    ReportResult,
    RunResult,
    calibrate,
    cards,
    check_bootstrap,
    check_limit,
    check_sampling,
    export_cards,
    hh_audit,
    import_cards,
    judge,
    judge_batch_export,
    judge_batch_import,
    leaderboard,
    limited_prompts,
    merge,
    parse_shard,
    prompt_stratum,
    report,
    run,
    study_judge,
)

__all__ = [
    "DEFAULT_MAX_TOKENS", "DEFAULT_MODEL", "DEFAULT_PROMPTS", "LIMIT_MODES", "MAX_BOOTSTRAP", "MAX_NEW_TOKENS",
    "MAX_SEED", "ReportResult", "RunResult", "calibrate", "cards", "check_bootstrap", "check_limit", "check_sampling",
    "export_cards", "hh_audit", "import_cards", "judge", "judge_batch_export", "judge_batch_import", "leaderboard",
    "limited_prompts", "merge", "parse_shard", "prompt_stratum", "report", "run", "study_judge",
]
