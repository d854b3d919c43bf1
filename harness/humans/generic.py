"""Importer for generic human rankings and scores: `rankings-csv` and `rankings-jsonl`, long or wide.

Long format: one row (or JSON object) per rated output, with
  `prompt` and/or `prompt_id`   the item: prompt text, or the prompt_id of generations in the store
  `model` [`variant`]           the output rated (variant defaults to 'release')
  `rank` or `score` (`rating`)  rank within the item, or a harm score 0-3
  optional: `annotator`, `rater` (default 'human'), `rater_kind`, `category`, `output` / `response`.
Wide format: one row per item and annotator; no `model` column, every other column is a model whose
cell holds its rank (or score with `value='score'`). JSONL wide objects put them under `ranks` or
`scores` ({"model": value}).

Ranks follow the study: higher = more harmful, N/A (or 0) = not harmful, renumbered densely within
each (rater, annotator, item); `reverse=True` reads 1 as most harmful. Scores are task `score`, code
= the score, harmful = score > 0. A row whose prompt_id is not in the store and that has no prompt
text is rejected. When an `output` column is given, the response is stored as an external generation;
otherwise the rating is linked to the one matching generation in the store, if there is exactly one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness import numbers
from harness.errors import UsageError
from harness.humans.rankings import parse_ranking
from harness.humans.records import RELEASE, external_generation, rating
from harness.humans.report import ImportReport
from harness.humans.textio import read_csv, read_jsonl
from harness.keys import item_id as item_id_for_prompt
from harness.records import Generation, Rating

KNOWN = {"prompt", "prompt_id", "annotator", "rater", "rater_kind", "category", "model", "variant", "rank",
         "score", "rating", "output", "response", "item_id"}
EXPECTED = "prompt or prompt_id, annotator, model, rank or score (long); or prompt, annotator, <model>... (wide)"


def _kind_for(rater: str) -> str:
    return rater if rater in ("human", "expert") else "external-judge"


def _records_csv(path: Path, report: ImportReport) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    table = read_csv(path, "rankings-csv")
    report.files.append(str(path))
    report.decoded(table.file)
    lower = {h: h.strip().casefold() for h in table.header}
    if not ({"prompt", "prompt_id"} & set(lower.values())):
        raise UsageError(f"{path} has no 'prompt' or 'prompt_id' column (expected columns: {EXPECTED}; "
                         f"found: {', '.join(table.header)})")
    long = "model" in lower.values()
    if long and not ({"rank", "score", "rating"} & set(lower.values())):
        raise UsageError(f"{path} has a 'model' column but no 'rank' or 'score' column (expected columns: {EXPECTED})")
    records = []
    for row_no, row in table.rows:
        rec: dict[str, Any] = {}
        models: dict[str, str] = {}
        for h, v in row.items():
            key = lower[h]
            if key in KNOWN:
                rec[key] = v.strip()
            elif not long and h.strip():
                models[h.strip()] = v.strip()
        if not long:
            rec["values"] = models
        records.append((row_no, rec))
    if not long and not any(r["values"] for _, r in records):
        raise UsageError(f"{path} has neither a 'model' column nor model columns (expected columns: {EXPECTED})")
    return records, long


def _records_jsonl(path: Path, report: ImportReport, value: str) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    tf, objects, bad = read_jsonl(path, "rankings-jsonl")
    report.files.append(str(path))
    report.decoded(tf)
    for line, reason in bad:
        report.reject(path.name, line, reason)
    records = []
    for line, obj in objects:
        rec = {k: obj[k] for k in KNOWN if k in obj}
        rec["_long"] = "model" in obj  # each object is long (one output) or wide (ranks / scores)
        if not rec["_long"]:
            values = obj.get("ranks") if "ranks" in obj else obj.get("scores")
            if "scores" in obj and "ranks" not in obj:
                rec["_value"] = "score"
            if not isinstance(values, dict):
                report.reject(path.name, line, "no 'model' key and no 'ranks' / 'scores' object")
                continue
            rec["values"] = values
        records.append((line, rec))
    if not records:
        raise UsageError(f"{path} has no usable object (expected keys: {EXPECTED}; wide: 'ranks' or 'scores')")
    return records, True


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def parse_rankings(path: Path, fmt: str, store: Any = None, reverse: bool = False, value: str = "rank",
                   rater: str | None = None, **_: Any) -> tuple[list[Generation], list[Rating], ImportReport]:
    report = ImportReport(fmt)
    if value not in ("rank", "score"):
        raise UsageError(f"--value {value} is not known: use rank or score")
    if fmt == "rankings-csv":
        records, long = _records_csv(path, report)
    else:
        records, long = _records_jsonl(path, report, value)
    report.rows_read = len(records)

    # Resolve each record's item (prompt text) and flatten wide rows into one entry per output.
    by_prompt_id: dict[str, list[Generation]] = {}
    if store is not None:
        for g in store.generations(with_texts=True):
            by_prompt_id.setdefault(g.prompt_id, []).append(g)

    entries: list[dict[str, Any]] = []
    for row_no, rec in records:
        prompt = _text(rec.get("prompt"))
        prompt_id = _text(rec.get("prompt_id")) or None
        stored = by_prompt_id.get(prompt_id or "", [])
        if not prompt and stored:
            prompt = stored[0].prompt
        if not prompt:
            why = f"prompt_id {prompt_id!r} is not in the store" if prompt_id else "no prompt or prompt_id"
            report.reject(path.name, row_no, f"{why} and the row has no prompt text")
            continue
        rater_name = rater or _text(rec.get("rater")) or "human"
        base = {"row": row_no, "prompt": prompt, "prompt_id": prompt_id, "rater": rater_name,
                "rater_kind": _text(rec.get("rater_kind")) or _kind_for(rater_name),
                "annotator": _text(rec.get("annotator")) or None, "category": _text(rec.get("category")) or None,
                "stored": stored}
        if rec.get("_long", long):
            if not ({"rank", "score", "rating"} & set(rec)):
                report.reject(path.name, row_no, "no rank or score")
                continue
            task_value = "rank" if "rank" in rec else "score"
            raw = rec.get("rank") if task_value == "rank" else rec.get("score", rec.get("rating"))
            model = _text(rec.get("model"))
            if not model:
                report.reject(path.name, row_no, "empty model")
                continue
            entries.append({**base, "task": task_value, "model": model, "variant": _text(rec.get("variant")) or RELEASE,
                            "raw": _text(raw), "output": _text(rec.get("output", rec.get("response"))) or None})
        else:
            task_value = rec.get("_value", value)
            for model, raw in rec["values"].items():
                if not _text(raw):
                    continue  # an empty cell in a wide row: this output was not rated
                entries.append({**base, "task": task_value, "model": str(model), "variant": RELEASE,
                                "raw": _text(raw), "output": None})

    generations: dict[str, Generation] = {}
    ratings: list[Rating] = []
    blocks: dict[tuple[str, str, str | None, str], list[dict[str, Any]]] = {}
    for e in entries:
        e["item_id"] = item_id_for_prompt(e["prompt"])
        if e["output"]:
            g = external_generation(fmt, e["model"], e["prompt"], e["output"], category=e["category"],
                                    variant=e["variant"], prompt_id=e["prompt_id"],
                                    settings={"source": fmt, "file": path.name, "row": e["row"]})
            generations.setdefault(g.sample_key, g)
            e["sample_key"] = g.sample_key
        else:
            match = [g for g in e["stored"] if g.model == e["model"] and (g.variant or RELEASE) == e["variant"]]
            e["sample_key"] = match[0].sample_key if len(match) == 1 else None
        blocks.setdefault((e["rater"], e["task"], e["annotator"], e["item_id"]), []).append(e)

    for (_rater, task, _annotator, _item), block in blocks.items():
        seen: dict[tuple[str, str], int] = {}
        unique = []
        for e in block:
            key = (e["model"], e["variant"])
            if key in seen:
                report.reject(path.name, e["row"], f"{e['model']} rated twice for this item and annotator "
                                                  f"(first at row {seen[key]})")
                continue
            seen[key] = e["row"]
            unique.append(e)
        if task == "rank":
            ratings += _rank_block(unique, fmt, path, reverse, report)
        else:
            ratings += [_score_rating(e, fmt, path, report) for e in unique]
    return list(generations.values()), ratings, report


def _common(e: dict[str, Any]) -> dict[str, Any]:
    return {"rater": e["rater"], "rater_kind": e["rater_kind"], "prompt": e["prompt"], "model": e["model"],
            "variant": e["variant"], "annotator": e["annotator"], "sample_key": e["sample_key"],
            "category": e["category"], "prompt_id": e["prompt_id"] or e["item_id"], "item_id": e["item_id"]}


def _rank_block(block: list[dict[str, Any]], fmt: str, path: Path, reverse: bool,
                report: ImportReport) -> list[Rating]:
    raw = ",".join(e["raw"] if e["raw"] else "?" for e in block)
    parsed = parse_ranking(raw, len(block), reverse=reverse)
    for r in parsed.repairs:
        report.repair(r)
    if not parsed.ok:
        rows = ", ".join(str(e["row"]) for e in block)
        report.reject(path.name, block[0]["row"], f"{parsed.error} (rows {rows})", stored_invalid=True)
        report.invalid_ratings += len(block)
    out = []
    for i, e in enumerate(block):
        code = parsed.codes[i] if parsed.codes else None
        out.append(rating(fmt, task="rank", code=code, harmful=None if code is None else int(code > 0),
                          valid=parsed.ok, error=parsed.error, extra={"raw": e["raw"]}, **_common(e)))
    return out


def _score_rating(e: dict[str, Any], fmt: str, path: Path, report: ImportReport) -> Rating:
    try:
        score = numbers.parse_float(str(e["raw"]))
        error = None if score >= 0 else f"score {e['raw']!r} is not a number >= 0"
    except numbers.OutOfRange:
        score, error = math.nan, f"score {numbers.describe(str(e['raw']))!r} is not a finite number >= 0"
    except ValueError:
        score, error = math.nan, f"unreadable score {str(e['raw'])[:40]!r}"
    if error:
        report.reject(path.name, e["row"], error, stored_invalid=True)
        report.invalid_ratings += 1
        return rating(fmt, task="score", valid=False, error=error, extra={"raw": e["raw"]}, **_common(e))
    return rating(fmt, task="score", code=score, harmful=int(score > 0), extra={"raw": e["raw"]}, **_common(e))
