"""The Python API: every operation of the command line, each returning typed results.

`_core` holds run, judge (and its batch files), report, leaderboard, merge, judge cards, calibration, the study's
judge benchmark and the HH-RLHF audit; one module per other area holds its operations (models, devices, prompts,
export, humans, agree, annotate, fleet, judges, study). This file re-exports their public names, so a reader sees
the API in one place and the CLI (harness.cli) calls nothing else. Result types defined below this layer
(`JudgeResult`, `LeaderboardRow`, `JudgeCard`, ...) are re-exported lazily, so `import harness.api` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    run_spec,
    study_judge,
)
from harness.api.agree import AGREEMENT_TASKS, agreement
from harness.api.annotate import LabellingPage, labelling_page
from harness.api.attacks import AttackExample, AttackSummary, list_attacks, show_attack
from harness.api.devices import Detection, Probe, detect_device, list_devices, probe_device, show_device
from harness.api.export import EXPORT_FORMATS, Export, export_table
from harness.api.fleet import (
    DEFAULT_FLEET_PORT,
    FleetWorker,
    fleet_status,
    fleet_worker,
    serve_fleet_scheduler,
    serve_fleet_worker,
)
from harness.api.humans import (
    LabellingPlan,
    draw_labelling_plan,
    export_labelling_tasks,
    harm_ranking,
    import_ratings,
    rating_formats,
)
from harness.api.judges import JudgeSummary, ProbeFit, fit_probe, judge_modes, list_judges
from harness.api.models import (
    AddedModel,
    ModelDetails,
    OnnxExport,
    Quantized,
    QuantizedVariant,
    add_model,
    convert_model,
    export_onnx,
    list_models,
    quantize_model,
    show_model,
)
from harness.api.prompts import PromptImport, PromptSetSummary, import_prompts, list_prompt_sets, show_prompts
from harness.api.study import reproduce_study
from harness.catalog import user_dirs as user_catalogs  # catalog folders that come first (`harness --catalog DIR`)

if TYPE_CHECKING:
    from harness.engine import RunSpec
    from harness.judging.runner import JudgeResult
    from harness.rates import NO_CONTENDED_COST, UNCALIBRATED_NOTE, ContendedCost, CostSummary, LeaderboardRow
    from harness.records import JudgeCard

# Result types (and the one note a result carries) defined below the API, imported on first use.
_LAZY = {
    "JudgeResult": "harness.judging.runner",
    "RunSpec": "harness.engine",
    "LeaderboardRow": "harness.rates",
    "UNCALIBRATED_NOTE": "harness.rates",
    "CostSummary": "harness.rates",
    "ContendedCost": "harness.rates",
    "NO_CONTENDED_COST": "harness.rates",
    "JudgeCard": "harness.records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MAX_TOKENS", "DEFAULT_MODEL", "DEFAULT_PROMPTS", "LIMIT_MODES", "MAX_BOOTSTRAP", "MAX_NEW_TOKENS",
    "MAX_SEED", "ReportResult", "RunResult", "calibrate", "cards", "check_bootstrap", "check_limit", "check_sampling",
    "export_cards", "hh_audit", "import_cards", "judge", "judge_batch_export", "judge_batch_import", "leaderboard",
    "limited_prompts", "merge", "parse_shard", "prompt_stratum", "report", "run", "run_spec", "RunSpec", "study_judge",
    # result types defined below the API (lazy)
    "JudgeCard", "JudgeResult", "LeaderboardRow", "UNCALIBRATED_NOTE", "CostSummary", "ContendedCost",
    "NO_CONTENDED_COST",
    # one module per area
    "AGREEMENT_TASKS", "agreement",
    "AttackExample", "AttackSummary", "list_attacks", "show_attack",
    "LabellingPage", "labelling_page",
    "Detection", "Probe", "detect_device", "list_devices", "probe_device", "show_device",
    "EXPORT_FORMATS", "Export", "export_table",
    "DEFAULT_FLEET_PORT", "FleetWorker", "fleet_status", "fleet_worker", "serve_fleet_scheduler", "serve_fleet_worker",
    "LabellingPlan", "draw_labelling_plan", "export_labelling_tasks", "harm_ranking", "import_ratings",
    "rating_formats",
    "JudgeSummary", "ProbeFit", "fit_probe", "judge_modes", "list_judges",
    "AddedModel", "ModelDetails", "OnnxExport", "Quantized", "QuantizedVariant", "add_model", "export_onnx",
    "list_models", "quantize_model", "show_model", "convert_model",
    "PromptImport", "PromptSetSummary", "import_prompts", "list_prompt_sets", "show_prompts",
    "reproduce_study", "user_catalogs",
]
