"""Importer for per-response labels: `labels-csv` and `labels-jsonl`, e.g. JailbreakBench's judge comparison,
XSTest's labels, and texts labelled alone such as OpenAI's moderation evaluation set.

A row (a CSV row, or one JSON object per line) is one judged output. Two layouts, columns / keys case ignored:
- a response to a prompt: prompt `prompt` (else `goal`); response `response`, `target_response`, `completion` or
  `output`.
- a text alone (no response column): the first of `text`, `prompt`, `content`, `comment_text`. The text is the
  judged output and its prompt is empty, so every judge sees it where it sees a reply (the rubric's response, the
  probe's and the guard's assistant turn) under an empty prompt; each text is its own item (item and prompt id
  from the text), so folds and `--limit` group a text by itself.
Optional in both: `model` (else the `model` option, else the file name after 'completions_'
(xstest_v2_completions_gpt4.csv -> gpt4), else the file name), `category` / `type`, `goal` (kept in extra).

Labels, the first kind the file has:
- flags named with `?flags=A,B` (harness.humans.flags: harmful when any is 1, not when all are present and 0, a row
  with no 1 and a missing flag rejected as unknown unless `?missing=negative`), as rater 'human', task `label`;
- harm labels (task `label`, 1 = harmful / jailbroken, 0 = not; yes/no, true/false, harmful/safe,
  unsafe/safe also read): `human1`, `human2`, ... as rater 'human' with annotators 'human1', ...;
  `human_majority` as rater 'human-majority'; `<judge>_cf` as rater '<judge>' of kind external-judge.
- compliance labels (task `refusal`): `annotation_1`, `annotation_2`, ... as rater 'human' with those
  annotators, and `final_label` as rater 'human-final'; values 1_full_compliance / 2_full_refusal /
  3_partial_refusal become labels compliance / refusal / partial_refusal, code 1 / 2 / 3. XSTest
  prompts whose `type` starts with `contrast_` are unsafe: there a full compliance is harmful = 1;
  every other label (and every label on a safe prompt) is harmful = 0.
- the moderation set's flags S, H, V, HR, SH, S3, H2, V2 (those the file has), read as `?flags=` reads them;
- a `label` column, read as a harm label (as rater 'human').

An unreadable label is kept as an invalid rating (harmful NULL) and listed among the rejected rows; a row whose
flags give no verdict, a JSONL line that is not a JSON object, and a text that is not a string are rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import keys
from harness.errors import UsageError
from harness.humans.flags import FlagRule, flag_rule, verdict
from harness.humans.records import RELEASE, external_generation, rating
from harness.humans.report import ImportReport
from harness.humans.textio import read_csv, read_jsonl
from harness.records import Generation, Rating

FORMAT = "labels-csv"
JSONL_FORMAT = "labels-jsonl"
PROMPT_COLUMNS = ("prompt", "goal")
RESPONSE_COLUMNS = ("response", "target_response", "completion", "output")
TEXT_COLUMNS = ("text", "prompt", "content", "comment_text")  # a text labelled alone: the first one present
EXPECTED = ("prompt (or goal) and response (or target_response / completion / output), or a text alone (text, "
            "prompt, content or comment_text); and labels: columns human1.., human_majority, <judge>_cf, "
            "annotation_1.., final_label, the moderation flags S, H, V, HR, SH, S3, H2, V2 (or ?flags=A,B), or label")
HARM_TRUE = {"1", "1.0", "yes", "true", "harmful", "unsafe", "jailbroken"}
HARM_FALSE = {"0", "0.0", "no", "false", "not_harmful", "harmless", "safe", "benign"}
COMPLIANCE = {"1_full_compliance": ("compliance", 1), "2_full_refusal": ("refusal", 2),
              "3_partial_refusal": ("partial_refusal", 3), "full_compliance": ("compliance", 1),
              "full_refusal": ("refusal", 2), "partial_refusal": ("partial_refusal", 3),
              "compliance": ("compliance", 1), "refusal": ("refusal", 2)}
LabelColumn = tuple[str, str, str, str | None, str]  # (column, task, rater, annotator, rater_kind)


@dataclass
class LabelRows:
    """A labels file's rows, CSV or JSONL alike: the columns (keys, in order of first appearance) and each row's
    values by column (CSV: strings; JSON: any value)."""

    header: list[str]
    rows: list[tuple[int, dict[str, Any]]]  # (row number, header row 1; or JSONL line number, values)

    def column(self, wanted: str) -> str | None:
        """The column spelled as in the file that matches `wanted` (case and spacing ignored)."""
        target = _norm(wanted)
        return next((h for h in self.header if _norm(h) == target), None)


@dataclass(frozen=True)
class Layout:
    """Where a file's outputs are: a prompt and a response column, or a text column alone (prompt None)."""

    prompt: str | None
    output: str

    @property
    def text_alone(self) -> bool:
        return self.prompt is None


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "")).strip().casefold()


def _label_columns(header: list[str]) -> list[LabelColumn]:
    """(column, task, rater, annotator, rater_kind) for every label column found."""
    cols: list[LabelColumn] = []
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


def _read(path: Path, fmt: str, report: ImportReport) -> LabelRows:
    report.files.append(str(path))
    if fmt == JSONL_FORMAT:
        tf, objects, bad = read_jsonl(path, fmt)
        report.decoded(tf)
        for line, reason in bad:
            report.reject(path.name, line, reason)
        header = list(dict.fromkeys(k for _, obj in objects for k in obj))
        report.rows_read = len(objects) + len(bad)
        return LabelRows(header, [(line, dict(obj)) for line, obj in objects])
    table = read_csv(path, fmt)
    report.decoded(table.file)
    report.rows_read = len(table.rows)
    return LabelRows(table.header, [(n, dict(row)) for n, row in table.rows])


def _layout(table: LabelRows) -> Layout | None:
    response = next((c for name in RESPONSE_COLUMNS if (c := table.column(name))), None)
    if response is not None:
        prompt = next((c for name in PROMPT_COLUMNS if (c := table.column(name))), None)
        return Layout(prompt, response) if prompt is not None else None
    text = next((c for name in TEXT_COLUMNS if (c := table.column(name))), None)
    return Layout(None, text) if text is not None else None


def _labels(table: LabelRows, flags: str | None, missing: str | None, where: str
            ) -> tuple[FlagRule | None, list[LabelColumn]]:
    """The file's labels: a flag rule, or label columns (see the module docstring for which comes first)."""
    rule = flag_rule(table.header, flags, missing, where)
    if flags is not None:
        return rule, []
    cols = _label_columns(table.header)
    if cols:
        if missing is not None:
            raise UsageError(f"{where}: ?missing= is for flags, but the file's labels are columns "
                             f"{', '.join(c for c, *_ in cols)}: drop it, or name the flags with ?flags=")
        return None, cols
    if rule is not None:
        return rule, []
    if missing is not None:
        raise UsageError(f"{where}: ?missing= is for flags, but the file has none of the moderation flags: name "
                         "them with ?flags=A,B")
    label = table.column("label")
    return None, [(label, "label", "human", None, "human")] if label else []


def _cell(row: dict[str, Any], col: str | None) -> str:
    """A cell as text (a JSON number or true/false as written in CSV); '' when absent."""
    if col is None:
        return ""
    v = row.get(col)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip()


def _text(row: dict[str, Any], col: str | None) -> str | None:
    """A prompt, response or text cell: the string, '' when empty or absent, None when it is not a string."""
    v = row.get(col) if col is not None else None
    if v is None:
        return ""
    return v.strip() if isinstance(v, str) else None


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true or false"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(v), "not text")


def parse_labels(path: Path, store: Any = None, model: str | None = None, flags: str | None = None,
                 missing: str | None = None, fmt: str = FORMAT, **_: Any
                 ) -> tuple[list[Generation], list[Rating], ImportReport]:
    report = ImportReport(fmt)
    table = _read(path, fmt, report)
    where = str(path)
    layout = _layout(table)
    rule, label_cols = _labels(table, flags, missing, where)
    if layout is None or (rule is None and not label_cols):
        found = ", ".join(table.header[:30]) or "none"
        raise UsageError(f"{path} is not a {fmt} file: expected {EXPECTED} (found: {found})")
    if layout.text_alone:
        report.notes.append(f"{path.name}: texts labelled alone ({layout.output!r}, no response column): each text "
                            "is judged as an output under an empty prompt, one item per text")
    if rule is not None:
        report.notes.append(f"{path.name}: {rule.describe()}")
    model_col = table.column("model")
    category_col = table.column("category") or table.column("type")
    goal_col = table.column("goal") if layout.prompt != table.column("goal") else None
    refusal_labels = any(t == "refusal" for _, t, *_ in label_cols)
    default_model = _model_name(path, model)
    row_word = "line" if fmt == JSONL_FORMAT else "row"
    generations: dict[str, Generation] = {}
    ratings: list[Rating] = []
    seen: dict[tuple[str, str], int] = {}
    for row_no, row in table.rows:
        prompt = "" if layout.prompt is None else _text(row, layout.prompt)
        output = _text(row, layout.output)
        if prompt is None or output is None:
            col = layout.output if output is None else str(layout.prompt)
            report.reject(path.name, row_no, f"{col!r} is {_json_kind(row.get(col))}, not a string")
            continue
        if not prompt and layout.prompt is not None:
            report.reject(path.name, row_no, f"empty {layout.prompt}")
            continue
        if not output:
            report.reject(path.name, row_no, f"empty {layout.output}")
            continue
        flagged = verdict(row, rule) if rule is not None else None
        if flagged is not None and flagged.harmful is None:
            report.reject(path.name, row_no, flagged.reason or "no verdict")
            continue
        model_name = _cell(row, model_col) or default_model
        category = _cell(row, category_col) or None
        unsafe = category.startswith("contrast_") if category and refusal_labels else None
        item = keys.item_id(output) if layout.text_alone else None
        g = external_generation(fmt, model_name, prompt, output, category=category,
                                benign=None if unsafe is None else not unsafe, prompt_id=item, item_id=item,
                                settings={"source": fmt, "file": path.name, row_word: row_no})
        key = (model_name, g.prompt_id)
        if key in seen and (layout.text_alone or generations.get(g.sample_key) is not None):
            what = "text and model" if layout.text_alone else "prompt and model"
            report.reject(path.name, row_no, f"the same {what} again (first at {row_word} {seen[key]})")
            continue
        seen[key] = row_no
        generations.setdefault(g.sample_key, g)
        goal = _cell(row, goal_col)
        common: dict[str, Any] = {"prompt": prompt, "model": model_name, "variant": RELEASE,
                                  "sample_key": g.sample_key, "category": category, "item_id": item,
                                  "prompt_id": item}
        if flagged is not None and flagged.harmful is not None and rule is not None:
            extra = {**({"goal": goal} if goal else {}), "flags": dict(flagged.values or {}),
                     "positive": list(flagged.positive), "missing": list(flagged.missing)}
            ratings.append(rating(fmt, rater="human", rater_kind="human", task="label", code=flagged.harmful,
                                  label="harmful" if flagged.harmful else "not_harmful", harmful=flagged.harmful,
                                  extra=extra, **common))
            continue
        _column_ratings(fmt, path, row_no, row, label_cols, bool(unsafe), goal, common, ratings, report)
    report.rejected.sort(key=lambda r: r.row)  # a JSONL file's unreadable lines in their place
    return list(generations.values()), ratings, report


def _column_ratings(fmt: str, path: Path, row_no: int, row: dict[str, Any], label_cols: list[LabelColumn],
                    unsafe: bool, goal: str, common: dict[str, Any], ratings: list[Rating],
                    report: ImportReport) -> None:
    """One rating per label column the row has a value in; an unreadable value as an invalid rating."""
    for col, task, rater_name, annotator, kind in label_cols:
        raw = _cell(row, col)
        if not raw:
            continue  # this annotator or judge did not label this response
        labelled: dict[str, Any] = {**common, "rater": rater_name, "rater_kind": kind, "task": task,
                                    "annotator": annotator,
                                    "extra": {**({"goal": goal} if goal else {}), "raw": raw, "column": col}}
        low = raw.casefold()
        if task == "label":
            if low in HARM_TRUE or low in HARM_FALSE:
                flag = int(low in HARM_TRUE)
                ratings.append(rating(fmt, code=flag, label="harmful" if flag else "not_harmful", harmful=flag,
                                      **labelled))
                continue
        elif low in COMPLIANCE:
            label, code = COMPLIANCE[low]
            harmful = int(unsafe and label == "compliance")
            ratings.append(rating(fmt, code=code, label=label, harmful=harmful, **labelled))
            continue
        error = f"unreadable {col} label {raw!r}"
        report.reject(path.name, row_no, error, stored_invalid=True)
        report.invalid_ratings += 1
        ratings.append(rating(fmt, valid=False, error=error, **labelled))
