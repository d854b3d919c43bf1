"""Importer for the public release of "Can LLMs Rank the Harmfulness of Smaller LLMs?" (Atil et al., WOAH 2025).

Input: the release folder (or one of its files):
- `raw_submissions/output_Group_N.csv` (any case): `Prompt`, `Model 1 - Mistral-7B`, `Model 2 - MPT-7B`,
  `Model 3 - StableLM-alpha-7B`, `Ranking` - one student group's ranking per prompt, 3 = most harmful,
  N/A = not harmful. Groups named in `reverse_groups` used 1 = most harmful (the study's Group 10).
- `expert_annotations.csv`: `prompt`, `expert_ranking` (same scale), the expert re-annotation.
- `<judge>_predictions.csv`: `prompt`, `extracted_pred` (the study's parse of the judge's answer `preds`,
  coded 0 = N/A, 1..3 = least..most harmful; "-1,-1,-1" = the study could not parse it), and in some
  files the three responses. Content A/B/C of the judge prompt = Mistral/MPT/StableLM.

Output: the responses as generations of the external models mistral-7b, mpt-7b and stablelm-alpha-7b
(so our own judges can judge them), and one `rank` rating per (rater, prompt, model): students as
rater 'human' with annotator 'group-N', the expert as rater 'expert', each prediction file as
rater '<judge>' of kind 'external-judge'. Expert and judge ratings are linked to the group's
responses by prompt; when a prompt has several response triplets (it was given to several groups)
a judge row is matched by its responses when the file has them, and is otherwise rejected as
ambiguous, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.humans.rankings import parse_ranking
from harness.humans.records import RELEASE, external_generation, rating
from harness.humans.report import ImportReport
from harness.humans.textio import CsvTable, read_csv
from harness.keys import item_id as item_id_for_prompt
from harness.records import Generation, Rating

FORMAT = "llm-harm"
MODEL_COLUMNS = [
    ("Model 1 - Mistral-7B", "mistral-7b"),
    ("Model 2 - MPT-7B", "mpt-7b"),
    ("Model 3 - StableLM-alpha-7B", "stablelm-alpha-7b"),
]
GROUP_COLUMNS = ["Prompt", *(c for c, _ in MODEL_COLUMNS), "Ranking"]
EXPERT_COLUMNS = ["prompt", "expert_ranking"]
PREDICTION_COLUMNS = ["prompt", "extracted_pred"]
GROUP_RE = re.compile(r"group[ _-]*(\d+)", re.IGNORECASE)
DEFAULT_REVERSE_GROUPS = (10,)  # the study's Group 10 ranked 1 = most harmful (its preprocess.py says so)


def _norm_text(s: str) -> str:
    return " ".join(s.split())


@dataclass
class _Triplet:
    """One group's three responses to a prompt, as stored."""

    item_id: str
    prompt: str
    outputs: dict[str, str]  # model -> response
    sample_keys: dict[str, str]  # model -> sample_key


@dataclass
class Release:
    groups: list[tuple[Path, str]] = field(default_factory=list)  # (file, annotator)
    experts: list[Path] = field(default_factory=list)
    predictions: list[tuple[Path, str]] = field(default_factory=list)  # (file, judge name)


def classify(path: Path) -> Release:
    """Find the release's files under a folder, or classify one file by its name."""
    rel = Release()
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    for f in files:
        if not f.is_file() or f.suffix.lower() != ".csv":
            continue
        name = f.name.lower()
        if name.endswith("_predictions.csv"):
            rel.predictions.append((f, f.name[: -len("_predictions.csv")]))
        elif "expert" in name:
            rel.experts.append(f)
        elif (m := GROUP_RE.search(f.stem)) is not None:
            rel.groups.append((f, f"group-{int(m.group(1))}"))
        elif not path.is_dir():
            rel.groups.append((f, f.stem))  # a single file named otherwise: a student group file
    if not (rel.groups or rel.experts or rel.predictions):
        raise UsageError(
            f"no llm-harm files in {path}: pass the release folder holding raw_submissions/output_Group_N.csv, "
            "expert_annotations.csv and <judge>_predictions.csv")
    rel.groups.sort(key=_group_order)
    return rel


def _group_order(group: tuple[Path, str]) -> tuple[int, str]:
    m = re.search(r"\d+", group[1])
    return (int(m.group(0)) if m else 0, group[1])


def _value(table: CsvTable, row: dict[str, str], column: str) -> str:
    col = table.column(column)
    return (row.get(col) or "").strip() if col else ""


def _ranking_ratings(report: ImportReport, *, rater: str, rater_kind: str, annotator: str | None, prompt: str,
                     triplet: _Triplet | None, raw: str, reverse: bool, zero_repair: bool, file: str, row: int,
                     extra: dict[str, Any]) -> list[Rating]:
    parsed = parse_ranking(raw, len(MODEL_COLUMNS), reverse=reverse, count_zero_as_repair=zero_repair)
    if rater_kind == "external-judge" and not parsed.ok and "-1" in raw:
        parsed.error = f"the study could not parse this judge answer (extracted_pred {raw!r})"
    for r in parsed.repairs:
        report.repair(r)
    if not parsed.ok:
        report.reject(file, row, parsed.error or "unparseable ranking", stored_invalid=True)
        report.invalid_ratings += len(MODEL_COLUMNS)
    out = []
    for i, (_, model) in enumerate(MODEL_COLUMNS):
        code = parsed.codes[i] if parsed.codes else None
        out.append(rating(
            FORMAT, rater=rater, rater_kind=rater_kind, task="rank", prompt=prompt, model=model, variant=RELEASE,
            annotator=annotator, sample_key=triplet.sample_keys.get(model) if triplet else None,
            code=code, harmful=None if code is None else int(code > 0), valid=parsed.ok, error=parsed.error,
            extra={**extra, "raw_ranking": raw}, item_id=triplet.item_id if triplet else None))
    return out


def parse_release(path: Path, reverse_groups: Iterable[int | str] = (), store: Any = None
                  ) -> tuple[list[Generation], list[Rating], ImportReport]:
    """Read the release: (generation rows, rating rows, report). Raises UsageError before writing anything."""
    report = ImportReport(FORMAT)
    rel = classify(path)
    reverse = {f"group-{int(g)}" if str(g).isdigit() else str(g) for g in reverse_groups}
    tables = {}
    for f, _ in rel.groups:
        tables[f] = read_csv(f, "llm-harm group submission", GROUP_COLUMNS)
    for f in rel.experts:
        tables[f] = read_csv(f, "llm-harm expert annotation", EXPERT_COLUMNS)
    for f, _ in rel.predictions:
        tables[f] = read_csv(f, "llm-harm judge prediction", PREDICTION_COLUMNS)
    for f, t in tables.items():
        report.files.append(str(f))
        report.rows_read += len(t.rows)
        if t.file.repaired_encoding:
            report.repair(t.file.repaired_encoding)
    unused = reverse - {a for _, a in rel.groups}
    if unused and rel.groups:
        report.notes.append(f"--reverse-groups {', '.join(sorted(unused))}: no such group file in this import")

    generations: dict[str, Generation] = {}
    ratings: list[Rating] = []
    triplets: dict[str, list[_Triplet]] = {}

    for f, annotator in rel.groups:
        t = tables[f]
        seen: dict[str, int] = {}
        for row_no, row in t.rows:
            prompt = _value(t, row, "Prompt")
            if not prompt:
                report.reject(f.name, row_no, "empty Prompt")
                continue
            item = item_id_for_prompt(prompt)
            if item in seen:
                report.reject(f.name, row_no, f"the same prompt again (first at row {seen[item]})")
                continue
            seen[item] = row_no
            outputs = {model: _value(t, row, col) for col, model in MODEL_COLUMNS}
            missing = [model for model, text in outputs.items() if not text]
            if missing:
                report.reject(f.name, row_no, f"missing response of {', '.join(missing)} (the study drops such rows)")
                continue
            keys = {}
            for model, text in outputs.items():
                g = external_generation(FORMAT, model, prompt, text,
                                        settings={"source": FORMAT, "file": f.name, "row": row_no})
                generations.setdefault(g.sample_key, g)
                keys[model] = g.sample_key
            trip = _Triplet(item, prompt, outputs, keys)
            if not any(x.sample_keys == keys for x in triplets.get(item, [])):
                triplets.setdefault(item, []).append(trip)
            ratings += _ranking_ratings(
                report, rater="human", rater_kind="human", annotator=annotator, prompt=prompt, triplet=trip,
                raw=_value(t, row, "Ranking"), reverse=annotator in reverse, zero_repair=True, file=f.name,
                row=row_no, extra={"group": annotator})

    if store is not None and (rel.experts or rel.predictions):
        _add_stored_triplets(store, triplets)

    unlinked: dict[str, int] = {}  # file -> rows whose prompt has no group responses here
    for f in rel.experts:
        t = tables[f]
        for row_no, row in t.rows:
            prompt = _value(t, row, "prompt")
            if not prompt:
                report.reject(f.name, row_no, "empty prompt")
                continue
            found = triplets.get(item_id_for_prompt(prompt), [])
            if len(found) > 1:
                report.reject(f.name, row_no, f"the prompt has {len(found)} response triplets (several groups): "
                                              "the expert file does not say which one it ranks")
                continue
            if not found:
                unlinked[f.name] = unlinked.get(f.name, 0) + 1
            ratings += _ranking_ratings(
                report, rater="expert", rater_kind="expert", annotator="expert", prompt=prompt,
                triplet=found[0] if found else None, raw=_value(t, row, "expert_ranking"), reverse=False,
                zero_repair=True, file=f.name, row=row_no, extra={})

    for f, judge in rel.predictions:
        ratings += _predictions(tables[f], f, judge, triplets, report, unlinked)
    for name, n in unlinked.items():
        report.notes.append(f"{name}: {n} row(s) rank prompts whose responses are not in this import or the store; "
                            "their ratings have no sample_key (import the group files to link them)")

    report.generations_built = len(generations)
    return list(generations.values()), ratings, report


def _add_stored_triplets(store: Any, triplets: dict[str, list[_Triplet]]) -> None:
    """Add the response triplets already in the store (an earlier import of the group files)."""
    grouped: dict[tuple[str, Any, Any], dict[str, Generation]] = {}
    for r in sorted(store.generations(run_ids=[f"import:{FORMAT}"]), key=lambda g: g.sample_key):
        origin = r.settings if isinstance(r.settings, dict) else {}
        key = (item_id_for_prompt(r.prompt), origin.get("file"), origin.get("row"))
        grouped.setdefault(key, {})[r.model] = r
    for (item, _, _), models in grouped.items():
        if set(models) != {m for _, m in MODEL_COLUMNS}:
            continue
        keys = {m: r.sample_key for m, r in models.items()}
        if any(x.sample_keys == keys for x in triplets.get(item, [])):
            continue
        prompt = next(iter(models.values())).prompt
        triplets.setdefault(item, []).append(
            _Triplet(item, prompt, {m: str(r.output or "") for m, r in models.items()}, keys))


def _predictions(t: CsvTable, f: Path, judge: str, triplets: dict[str, list[_Triplet]],
                 report: ImportReport, unlinked: dict[str, int]) -> list[Rating]:
    has_outputs = all(t.column(c) for c, _ in MODEL_COLUMNS)
    rows_by_item: dict[str, list[int]] = {}
    for row_no, row in t.rows:
        p = _value(t, row, "prompt")
        if p:
            rows_by_item.setdefault(item_id_for_prompt(p), []).append(row_no)
    out: list[Rating] = []
    for row_no, row in t.rows:
        prompt = _value(t, row, "prompt")
        if not prompt:
            report.reject(f.name, row_no, "empty prompt")
            continue
        item = item_id_for_prompt(prompt)
        found = triplets.get(item, [])
        trip: _Triplet | None = None
        if has_outputs:
            responses = {m: _norm_text(_value(t, row, c)) for c, m in MODEL_COLUMNS}
            matches = [x for x in found if all(_norm_text(x.outputs[m]) == responses[m] for m in responses)]
            if found and not matches:
                report.reject(f.name, row_no, "its responses differ from the imported group responses to this "
                                              "prompt (the prompt was given to another group too)")
                continue
            trip = matches[0] if matches else None
        else:
            if len(rows_by_item[item]) > 1:
                others = ", ".join(str(r) for r in rows_by_item[item] if r != row_no)
                report.reject(f.name, row_no, f"the prompt is also in row(s) {others} and the file has no responses "
                                              "to tell which triplet each row ranks")
                continue
            if len(found) > 1:
                report.reject(f.name, row_no, f"the prompt has {len(found)} response triplets (several groups) and "
                                              "the file has no responses to tell which one it ranks")
                continue
            trip = found[0] if found else None
        if trip is None:
            unlinked[f.name] = unlinked.get(f.name, 0) + 1
        preds = _value(t, row, "preds")
        out += _ranking_ratings(report, rater=judge, rater_kind="external-judge", annotator=None, prompt=prompt,
                                triplet=trip, raw=_value(t, row, "extracted_pred"), reverse=False, zero_repair=False,
                                file=f.name, row=row_no, extra={"preds": preds} if preds else {})
    return out
