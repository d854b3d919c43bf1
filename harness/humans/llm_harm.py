"""Importer for the public release of "Can LLMs Rank the Harmfulness of Smaller LLMs?" (Atil et al., WOAH 2025).

Input: the release folder (or one of its files):
- `raw_submissions/output_Group_N.csv` (any case): `Prompt`, `Model 1 - Mistral-7B`, `Model 2 - MPT-7B`,
  `Model 3 - StableLM-alpha-7B`, `Ranking` - one student group's ranking per prompt, 3 = most harmful,
  N/A = not harmful. Groups named in `reverse_groups` used 1 = most harmful (the study's Group 10).
  Files come in several encodings (UTF-8, Mac-Roman, UTF-8 with broken sequences): harness.encodings
  decodes each and the report names the encoding chosen.
- `expert_annotations.csv`: `prompt`, `expert_ranking` (same scale), the expert re-annotation: five prompts
  per group, one block of five rows per group (the blocks are not in group order).
- `<judge>_predictions.csv`: `prompt` (lower-cased by the study), `extracted_pred` (the study's parse of the
  judge's answer `preds`, coded 0 = N/A, 1..3 = least..most harmful; "-1,-1,-1" = the study could not parse
  it) and, in some files, the three responses. Content A/B/C of the judge prompt = Mistral/MPT/StableLM.

The study's own preprocessing keeps a group row unless a response or its Ranking is missing, with pandas'
idea of missing (an empty cell, or a cell reading N/A, NA, null, None, NaN ...): a Ranking of just "N/A" drops
the row. The kept rows of groups 1..17, in order, are the triplets the judges ranked. Each prediction row is
paired with one of them and every pairing is verified by prompt text (letters and digits, case ignored, so
the study's lower-casing and mojibake do not matter) and by the three responses wherever the file has them;
where the responses are empty (the last rows of the llama file) or absent, the prompt decides, and a prompt
asked of two groups is resolved by the row's neighbours (the pairing continues the run of the row before it,
or precedes the row after it). The expert file's prompts shared by two groups are resolved by its
five-per-group block order: a block's group is the one its unshared prompts come from. A row that no triplet verifies is rejected with the reason, never guessed.

Output: the responses as generations of the external models mistral-7b, mpt-7b and stablelm-alpha-7b (so our
own judges can judge them), and one `rank` rating per (rater, prompt, model): students as rater 'human' with
annotator 'group-N', the expert as rater 'expert', each prediction file as rater '<judge>' of kind
'external-judge'.
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
EXPERT_BLOCK = 5  # the expert file re-annotates five prompts of each group, one block of five rows per group
# Cells pandas.read_csv reads as missing (its default na_values): the study drops rows with such a response or Ranking.
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
             "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def match_text(s: str) -> str:
    """What two copies of a prompt or response share whatever their case, spacing, quotes or encoding."""
    return re.sub(r"[^a-z0-9]", "", s.casefold())


@dataclass
class _Triplet:
    """One kept group row: the study's triplet of responses to a prompt, as stored."""

    position: int  # in the study's concatenation of the groups' kept rows
    group: str  # annotator, e.g. group-10
    file: str
    row: int
    item_id: str
    prompt: str
    outputs: dict[str, str]  # model -> response
    sample_keys: dict[str, str]  # model -> sample_key

    @property
    def prompt_match(self) -> str:
        return match_text(self.prompt)


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


def _group_number(annotator: str) -> int | None:
    m = re.fullmatch(r"group-(\d+)", annotator)
    return int(m.group(1)) if m else None


def _raw(table: CsvTable, row: dict[str, str], column: str) -> str:
    col = table.column(column)
    return row.get(col, "") if col else ""


def _value(table: CsvTable, row: dict[str, str], column: str) -> str:
    return _raw(table, row, column).strip()


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
        report.decoded(t.file)
    if not any(t.rows for t in tables.values()):
        raise UsageError(f"the llm-harm files in {path} hold no rows (only headers): pass the release's files")
    unused = reverse - {a for _, a in rel.groups}
    if unused and rel.groups:
        report.notes.append(f"--reverse-groups {', '.join(sorted(unused))}: no such group file in this import")

    generations: dict[str, Generation] = {}
    ratings: list[Rating] = []
    kept: list[tuple[_Triplet, str, bool]] = []  # (triplet, raw Ranking, reverse scale)
    for f, annotator in rel.groups:
        kept += _kept_rows(tables[f], f, annotator, annotator in reverse, report)
    # A prompt the study gave to several groups is one item per group: each group ranked its own triplet.
    groups_of: dict[str, set[str]] = {}
    for trip, _, _ in kept:
        groups_of.setdefault(trip.prompt_match, set()).add(trip.group)
    triplets: list[_Triplet] = []
    for trip, ranking, rev in kept:
        shared = len(groups_of[trip.prompt_match]) > 1
        trip.item_id = f"{item_id_for_prompt(trip.prompt)}:{trip.group}" if shared else item_id_for_prompt(trip.prompt)
        trip.position = len(triplets)
        triplets.append(trip)
        for model, text in trip.outputs.items():
            g = external_generation(FORMAT, model, trip.prompt, text, item_id=trip.item_id if shared else None,
                                    settings={"source": FORMAT, "file": trip.file, "row": trip.row})
            generations.setdefault(g.sample_key, g)
            trip.sample_keys[model] = g.sample_key
        ratings += _ranking_ratings(
            report, rater="human", rater_kind="human", annotator=trip.group, prompt=trip.prompt, triplet=trip,
            raw=ranking, reverse=rev, zero_repair=True, file=trip.file, row=trip.row, extra={"group": trip.group})

    if store is not None and (rel.experts or rel.predictions):
        _add_stored_triplets(store, triplets)

    for f in rel.experts:
        ratings += _expert_ratings(tables[f], f, triplets, report)
    for f, judge in rel.predictions:
        ratings += _predictions(tables[f], f, judge, triplets, report)

    report.generations_built = len(generations)
    return list(generations.values()), ratings, report


def _kept_rows(t: CsvTable, f: Path, annotator: str, reverse: bool, report: ImportReport
               ) -> list[tuple[_Triplet, str, bool]]:
    """The rows of one group file the study keeps (and rates), with their raw Ranking."""
    out: list[tuple[_Triplet, str, bool]] = []
    seen: dict[str, int] = {}
    for row_no, row in t.rows:
        outputs = {model: _raw(t, row, col) for col, model in MODEL_COLUMNS}
        ranking = _raw(t, row, "Ranking")
        missing = [model for model, text in outputs.items() if text in PANDAS_NA or not text.strip()]
        if missing:
            report.reject(f.name, row_no, f"missing response of {', '.join(missing)} (the study drops such rows)")
            continue
        if ranking in PANDAS_NA:
            why = "no Ranking" if not ranking.strip() else f"the Ranking is {ranking!r} for the whole triplet"
            report.reject(f.name, row_no, f"{why} (the study drops such rows)")
            continue
        prompt = _value(t, row, "Prompt")
        if not prompt:
            report.reject(f.name, row_no, "empty Prompt (the study keeps the row, but it cannot be rated)")
            continue
        key = match_text(prompt)
        if key in seen:
            report.reject(f.name, row_no, f"the same prompt again (first at row {seen[key]})")
            continue
        seen[key] = row_no
        out.append((_Triplet(-1, annotator, f.name, row_no, "", prompt,
                             {model: text.strip() for model, text in outputs.items()}, {}), ranking.strip(), reverse))
    return out


def _add_stored_triplets(store: Any, triplets: list[_Triplet]) -> None:
    """Add the response triplets already in the store (an earlier import of the group files), after this import's
    own, in their original group and row order."""
    grouped: dict[tuple[str, Any, Any], dict[str, Generation]] = {}
    for r in store.generations(run_ids=[f"import:{FORMAT}"]):
        origin = r.settings if isinstance(r.settings, dict) else {}
        grouped.setdefault((str(origin.get("file")), origin.get("row"), r.prompt), {})[r.model] = r
    have = {tuple(sorted(t.sample_keys.values())) for t in triplets}
    stored = []
    for (file, row, prompt), models in grouped.items():
        if set(models) != {m for _, m in MODEL_COLUMNS}:
            continue
        keys = {m: r.sample_key for m, r in models.items()}
        if tuple(sorted(keys.values())) in have:
            continue
        m = GROUP_RE.search(file)
        annotator = f"group-{int(m.group(1))}" if m else Path(file).stem
        item = next(iter(models.values())).item_id or item_id_for_prompt(prompt)
        stored.append(_Triplet(-1, annotator, file, int(row) if isinstance(row, int) else 0, item, prompt,
                               {mm: str(r.output or "") for mm, r in models.items()}, keys))
    stored.sort(key=lambda t: (_group_number(t.group) or 0, t.row))
    for t in stored:
        t.position = len(triplets)
        triplets.append(t)


def _expert_ratings(t: CsvTable, f: Path, triplets: list[_Triplet],
                    report: ImportReport) -> list[Rating]:
    """The expert's rankings; a prompt shared by several groups goes to the group of its five-row block."""
    by_prompt: dict[str, list[_Triplet]] = {}
    for trip in triplets:
        by_prompt.setdefault(trip.prompt_match, []).append(trip)
    # Each block of five rows re-annotates prompts of one group; which group is told by the block's prompts that
    # only one group was asked (the blocks are not in group order).
    block_votes: dict[int, dict[str, int]] = {}
    for index, (_, row) in enumerate(t.rows):
        found = by_prompt.get(match_text(_value(t, row, "prompt")), [])
        if len(found) == 1:
            votes = block_votes.setdefault(index // EXPERT_BLOCK, {})
            votes[found[0].group] = votes.get(found[0].group, 0) + 1
    block_groups = {b: max(v, key=lambda g: (v[g], g)) for b, v in block_votes.items()}
    out: list[Rating] = []
    unlinked = 0
    for index, (row_no, row) in enumerate(t.rows):
        prompt = _value(t, row, "prompt")
        if not prompt:
            report.reject(f.name, row_no, "empty prompt")
            continue
        found = by_prompt.get(match_text(prompt), [])
        block = block_groups.get(index // EXPERT_BLOCK)
        if len(found) > 1:
            in_block = [x for x in found if x.group == block]
            if len(in_block) != 1:
                report.reject(f.name, row_no, f"the prompt has {len(found)} response triplets (several groups) and the "
                                              "file's five-per-group block order does not say which one it ranks")
                continue
            found = in_block
        if not found:
            unlinked += 1
        out += _ranking_ratings(
            report, rater="expert", rater_kind="expert", annotator="expert", prompt=prompt,
            triplet=found[0] if found else None, raw=_value(t, row, "expert_ranking"), reverse=False,
            zero_repair=True, file=f.name, row=row_no, extra={"block_group": block} if block else {})
    if unlinked:
        report.notes.append(f"{f.name}: {unlinked} row(s) rank prompts whose triplet the study dropped or that are "
                            "not in this import or the store; their ratings have no sample_key")
    return out


def _predictions(t: CsvTable, f: Path, judge: str, triplets: list[_Triplet], report: ImportReport) -> list[Rating]:
    """A judge's rankings, each row paired with one kept triplet and verified (see the module docstring).

    Pairing, in passes: (1) rows whose responses single out one triplet, and rows whose prompt is in one row of
    the file and one triplet; (2) rows next to a paired row whose triplet continues (or precedes) that row's;
    (3) rows with a single triplet left for their prompt. Every pairing agrees with the prompt text (and the
    responses, where the file has them); a row left over is rejected with the reason.
    """
    has_outputs = all(t.column(c) for c, _ in MODEL_COLUMNS)
    by_prompt: dict[str, list[_Triplet]] = {}
    for trip in triplets:
        by_prompt.setdefault(trip.prompt_match, []).append(trip)
    rows = [(row_no, row, _value(t, row, "prompt")) for row_no, row in t.rows]
    rows_of_prompt: dict[str, int] = {}
    cands: list[list[_Triplet]] = []
    with_responses: list[bool] = []
    for _, row, prompt in rows:
        key = match_text(prompt)
        rows_of_prompt[key] = rows_of_prompt.get(key, 0) + 1
        found = by_prompt.get(key, []) if prompt else []
        responses = {m: match_text(_value(t, row, c)) for c, m in MODEL_COLUMNS} if has_outputs else {}
        present = bool(responses) and all(responses.values())
        if present:
            found = [c for c in found if all(match_text(c.outputs[m]) == responses[m] for m in responses)]
        cands.append(found)
        with_responses.append(present)
    chosen: list[_Triplet | None] = [None] * len(rows)
    how: dict[str, int] = {}
    used: set[int] = set()

    def pair(i: int, trip: _Triplet, method: str) -> None:
        chosen[i] = trip
        used.add(trip.position)
        how[method] = how.get(method, 0) + 1

    for i, (_, _, prompt) in enumerate(rows):
        if len(cands[i]) == 1 and cands[i][0].position not in used and (
                with_responses[i] or rows_of_prompt[match_text(prompt)] == 1):
            pair(i, cands[i][0], "responses" if with_responses[i] else "prompt")
    changed = True
    while changed:
        changed = False
        for i in range(len(rows)):
            if chosen[i] is not None:
                continue
            free = [c for c in cands[i] if c.position not in used]
            prev = chosen[i - 1] if i > 0 else None
            nxt = chosen[i + 1] if i + 1 < len(rows) else None
            near = [c for c in free if (prev is not None and c.position == prev.position + 1)
                    or (nxt is not None and c.position == nxt.position - 1)]
            if len(near) == 1:
                pair(i, near[0], "position")
                changed = True
    for i in range(len(rows)):
        free = [c for c in cands[i] if c.position not in used]
        if chosen[i] is None and len(free) == 1:
            pair(i, free[0], "prompt")
    out: list[Rating] = []
    for i, (row_no, row, prompt) in enumerate(rows):
        paired_trip = chosen[i]
        if paired_trip is None:
            report.reject(f.name, row_no, _unpaired_reason(prompt, cands[i], with_responses[i], by_prompt, rows,
                                                          chosen))
            continue
        preds = _value(t, row, "preds")
        extra: dict[str, Any] = {"group": paired_trip.group, "group_row": paired_trip.row}
        if preds:
            extra["preds"] = preds
        out += _ranking_ratings(report, rater=judge, rater_kind="external-judge", annotator=None,
                                prompt=paired_trip.prompt, triplet=paired_trip, raw=_value(t, row, "extracted_pred"), reverse=False, zero_repair=False,
                                file=f.name, row=row_no, extra=extra)
    paired = sum(1 for c in chosen if c is not None)
    report.notes.append(f"{f.name}: {paired} of {len(rows)} row(s) paired with a group triplet ("
                        + (", ".join(f"{n} by {k}" for k, n in sorted(how.items())) or "none") + ")")
    return out


def _unpaired_reason(prompt: str, cands: list[_Triplet], with_responses: bool, by_prompt: dict[str, list[_Triplet]],
                     rows: list[tuple[int, dict[str, str], str]], chosen: list[_Triplet | None]) -> str:
    if not prompt:
        return "empty prompt"
    all_of_prompt = by_prompt.get(match_text(prompt), [])
    if not all_of_prompt:
        return "no kept group row has this prompt (the study drops rows with a missing response or Ranking)"
    if with_responses and not cands:
        return "its responses differ from every group triplet of this prompt (a group not in this import?)"
    taken = [f"{c.group} row {c.row} (paired with row {rows[chosen.index(c)][0]})" for c in all_of_prompt
             if c in chosen]
    if taken and len(taken) == len(all_of_prompt):
        return (f"this prompt's triplet(s) here are paired with other rows: {'; '.join(taken)}; this row ranks a "
                "group not in this import")
    return (f"the prompt has {len(all_of_prompt)} response triplets (several groups) and neither the file's responses "
            "nor its neighbouring rows tell which one this row ranks")
