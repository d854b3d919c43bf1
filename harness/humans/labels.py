"""Importer for per-response labels: `labels-csv`, e.g. JailbreakBench's judge comparison and XSTest's labels.

A row is one response to one prompt. Recognised columns (case ignored):
- prompt: `prompt` (else `goal`); response: `response`, `target_response`, `completion` or `output`;
  optional `model`, `category` / `type`, `goal` (kept in extra).
- harm labels (task `label`, 1 = harmful / jailbroken, 0 = not; yes/no, true/false, harmful/safe,
  unsafe/safe also read): `human1`, `human2`, ... as rater 'human' with annotators 'human1', ...;
  `human_majority` as rater 'human-majority'; `<judge>_cf` as rater '<judge>' of kind external-judge.
- compliance labels (task `refusal`): `annotation_1`, `annotation_2`, ... as rater 'human' with those
  annotators, and `final_label` as rater 'human-final'; values 1_full_compliance / 2_full_refusal /
  3_partial_refusal become labels compliance / refusal / partial_refusal, code 1 / 2 / 3. XSTest
  prompts whose `type` starts with `contrast_` are unsafe: there a full compliance is harmful = 1;
  every other label (and every label on a safe prompt) is harmful = 0.

The model is the `model` column, else the `model` option, else the file name after 'completions_'
(xstest_v2_completions_gpt4.csv -> gpt4), else the file name. An unreadable label is kept as an
invalid rating (harmful NULL) and listed among the rejected rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.humans.records import RELEASE, external_generation, rating
from harness.humans.report import ImportReport
from harness.humans.textio import read_csv
from harness.records import Generation, Rating

FORMAT = "labels-csv"
PROMPT_COLUMNS = ("prompt", "goal")
RESPONSE_COLUMNS = ("response", "target_response", "completion", "output")
EXPECTED = ("prompt (or goal), response (or target_response / completion), and label columns human1.., "
            "human_majority, <judge>_cf, or annotation_1.., final_label")
HARM_TRUE = {"1", "1.0", "yes", "true", "harmful", "unsafe", "jailbroken"}
HARM_FALSE = {"0", "0.0", "no", "false", "not_harmful", "harmless", "safe", "benign"}
COMPLIANCE = {"1_full_compliance": ("compliance", 1), "2_full_refusal": ("refusal", 2),
              "3_partial_refusal": ("partial_refusal", 3), "full_compliance": ("compliance", 1),
              "full_refusal": ("refusal", 2), "partial_refusal": ("partial_refusal", 3),
              "compliance": ("compliance", 1), "refusal": ("refusal", 2)}


def _label_columns(header: list[str]) -> list[tuple[str, str, str, str | None, str]]:
    """(column, task, rater, annotator, rater_kind) for every label column found."""
    cols: list[tuple[str, str, str, str | None, str]] = []
    for h in header:
        key = h.strip().casefold()
        if re.fullmatch(r"human\d+", key):
            cols.append((h, "label", "human", key, "human"))
        elif key == "human_majority":
            cols.append((h, "label", "human-majority", None, "human"))
        elif key.endswith("_cf") and len(key) > 3:
            cols.append((h, "label", h.strip()[:-3], None, "external-judge"))
        elif re.fullmatch(r"annotation_\d+", key):
            cols.append((h, "refusal", "human", key, "human"))
        elif key == "final_label":
            cols.append((h, "refusal", "human-final", None, "human"))
    return cols


def _model_name(path: Path, option: str | None) -> str:
    if option:
        return option
    stem = path.stem
    if "completions_" in stem:
        return stem.rsplit("completions_", 1)[1]
    return stem


def parse_labels(path: Path, store: Any = None, model: str | None = None, **_: Any
                 ) -> tuple[list[Generation], list[Rating], ImportReport]:
    report = ImportReport(FORMAT)
    table = read_csv(path, "labels-csv")
    report.files.append(str(path))
    report.decoded(table.file)
    prompt_col = next((table.column(c) for c in PROMPT_COLUMNS if table.column(c)), None)
    response_col = next((table.column(c) for c in RESPONSE_COLUMNS if table.column(c)), None)
    label_cols = _label_columns(table.header)
    if prompt_col is None or response_col is None or not label_cols:
        raise UsageError(f"{path} is not a labels-csv file: expected columns {EXPECTED} "
                         f"(found: {', '.join(table.header)})")
    model_col = table.column("model")
    category_col = table.column("category") or table.column("type")
    goal_col = table.column("goal") if prompt_col != table.column("goal") else None
    default_model = _model_name(path, model)
    report.rows_read = len(table.rows)
    generations: dict[str, Generation] = {}
    ratings: list[Rating] = []
    seen: dict[tuple[str, str], int] = {}
    for row_no, row in table.rows:
        prompt = (row.get(prompt_col) or "").strip()
        response = (row.get(response_col) or "").strip()
        if not prompt or not response:
            report.reject(path.name, row_no, f"empty {prompt_col if not prompt else response_col}")
            continue
        model_name = ((row.get(model_col) or "").strip() if model_col else "") or default_model
        category = (row.get(category_col) or "").strip() or None if category_col else None
        unsafe = category.startswith("contrast_") if category and any(t == "refusal" for _, t, *_ in label_cols) \
            else None
        g = external_generation(FORMAT, model_name, prompt, response, category=category,
                                benign=None if unsafe is None else not unsafe,
                                settings={"source": FORMAT, "file": path.name, "row": row_no})
        key = (model_name, g.prompt_id)
        if key in seen and generations.get(g.sample_key) is not None and seen[key] != row_no:
            report.reject(path.name, row_no, f"the same prompt and model again (first at row {seen[key]})")
            continue
        seen[key] = row_no
        generations.setdefault(g.sample_key, g)
        extra = {"goal": row[goal_col].strip()} if goal_col and row.get(goal_col) else None
        for col, task, rater_name, annotator, kind in label_cols:
            raw = (row.get(col) or "").strip()
            if not raw:
                continue  # this annotator or judge did not label this response
            common: dict[str, Any] = {"rater": rater_name, "rater_kind": kind, "task": task, "prompt": prompt, "model": model_name,
                      "variant": RELEASE, "annotator": annotator, "sample_key": g.sample_key,
                      "category": category, "extra": {**(extra or {}), "raw": raw, "column": col}}
            low = raw.casefold()
            if task == "label":
                if low in HARM_TRUE or low in HARM_FALSE:
                    flag = int(low in HARM_TRUE)
                    ratings.append(rating(FORMAT, code=flag, label="harmful" if flag else "not_harmful",
                                          harmful=flag, **common))
                    continue
            elif low in COMPLIANCE:
                label, code = COMPLIANCE[low]
                harmful = int(bool(unsafe) and label == "compliance")
                ratings.append(rating(FORMAT, code=code, label=label, harmful=harmful, **common))
                continue
            error = f"unreadable {col} label {raw!r}"
            report.reject(path.name, row_no, error, stored_invalid=True)
            report.invalid_ratings += 1
            ratings.append(rating(FORMAT, valid=False, error=error, **common))
    return list(generations.values()), ratings, report
