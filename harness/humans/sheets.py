"""Plain CSV round trip for spreadsheets and crowd platforms: one row per plan item, outputs as columns.

Export (`write_sheet`, `tasks.csv`): columns `plan`, `item`, `position`, `prompt`, `content_a`,
`content_b`, ... (the item's distinct texts in the plan's shown order: identical outputs are one content,
harness.humans.plan), `sample_keys` (every output's sample key in shown order, separated by spaces),
then empty answer columns: `annotator`, `ranking` (rank task, the study's format in shown order, e.g.
`2,1,N/A`: Content A is the second least harmful, B the least, C not harmful; `1,1,N/A` ties A and B) or
`harmful` (label task, yes/no per content in shown order, e.g. `yes,no,no`), and `seconds`. Cells that a
spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return) get a leading
apostrophe: outputs are adversarial text. Copy a row once per annotator.

Import (format `plan-csv`): the same columns back (prompt and contents are not read: the outputs come
from the store by sample key). A row with an empty answer is not labelled yet and is counted; the
annotator is the `annotator` cell, else the `--annotator` option. A ranking that skips a
rank, an unreadable yes/no, an unknown sample key or an item that does not match its sample keys refuses
the whole file (exit 2, naming the row), so nothing half-read is stored.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import keys, numbers
from harness.errors import UsageError
from harness.humans.collect import (
    TASKS,
    Answer,
    AnswerError,
    check_annotator,
    letter,
    parse_labels,
    ranking_text,
    ratings_for,
    strict_ranking,
)
from harness.humans.plan import PlanItem, PlanOutput
from harness.humans.report import ImportReport
from harness.humans.textio import read_csv
from harness.rating_tasks import LABEL, RANK, rating_task
from harness.records import Generation, Rating

FORMAT = "plan-csv"
SOURCE = "import:plan-csv"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


def content_column(j: int) -> str:
    return f"content_{letter(j).lower()}"


def write_sheet(items: Sequence[PlanItem], task: str, out_dir: Path) -> list[Path]:
    """tasks.csv in out_dir (see the module docstring)."""
    if task not in TASKS:
        raise UsageError(f"unknown --task {task!r}: use rank or label")
    k_max = max(it.n_contents for it in items)
    answer = rating_task(task).answer
    header = ["plan", "item", "position", "prompt", *(content_column(j) for j in range(k_max)), "sample_keys",
              "annotator", answer, "seconds"]
    path = out_dir / "tasks.csv"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for it in items:
                texts = [_cell(it.outputs[g[0]].output) for g in it.contents(it.shown_order)]
                w.writerow([it.plan, it.item, it.position, _cell(it.prompt), *texts, *[""] * (k_max - len(texts)),
                            " ".join(it.outputs[i].sample_key for i in it.shown_order), "", "", ""])
    except OSError as exc:
        raise UsageError(f"cannot write to {out_dir} ({exc.strerror}): choose a writable --out folder") from exc
    return [path]


def example_answer(task: str, shown_codes: Sequence[int]) -> str:
    """How a filled answer cell reads (used by tests and the docs)."""
    if rating_task(task).answer == "ranking":
        return ranking_text(shown_codes)
    return ",".join("yes" if c else "no" for c in shown_codes)


def _position(text: str) -> int:
    """The shown position a sheet's row gives (0 when it gives none, or no whole number in range)."""
    try:
        return numbers.parse_int(text) if text.isdigit() else 0
    except numbers.OutOfRange:
        return 0


def _seconds(text: str, where: str) -> float | None:
    if not text.strip():
        return None
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"{where}: seconds {text[:30]!r} is not a number: leave it empty or give seconds") from None
    if not math.isfinite(v) or v < 0:
        raise UsageError(f"{where}: seconds {text[:30]!r} is not a time: leave it empty or give seconds")
    return v


def parse_sheet(path: Path, store: Any = None, annotator: str | None = None, **_: Any
                ) -> tuple[list[Generation], list[Rating], ImportReport]:
    """Ratings from a filled tasks.csv (see the module docstring); nothing is written here."""
    if store is None:
        raise UsageError("importing a plan-csv sheet needs the store its plan was drawn from: pass --store")
    report = ImportReport(FORMAT)
    table = read_csv(path, "plan-csv", required=("item", "sample_keys"))
    report.files.append(str(path))
    if table.file.repaired_encoding:
        report.repair(table.file.repaired_encoding)
    rank_col, label_col = table.column(str(RANK.answer)), table.column(str(LABEL.answer))
    if (rank_col is None) == (label_col is None):
        raise UsageError(f"{path} needs exactly one answer column, 'ranking' (rank task) or 'harmful' (label task): "
                         "fill the tasks.csv that `harness humans export-tasks --format csv` wrote")
    task = (RANK if rank_col else LABEL).name
    answer_col = rank_col or label_col
    annotator_col, seconds_col, plan_col = table.column("annotator"), table.column("seconds"), table.column("plan")
    default_annotator = None
    if annotator:
        try:
            default_annotator = check_annotator(annotator)
        except AnswerError as exc:
            raise UsageError(f"--annotator: {exc}") from None
    parsed_rows: list[tuple[int, list[str], dict[str, str]]] = []
    for row_no, row in table.rows:
        sks = (row.get(table.column("sample_keys") or "") or "").split()
        parsed_rows.append((row_no, sks, row))
    wanted = sorted({sk for _, sks, _ in parsed_rows for sk in sks})
    generations = {g.sample_key: g for g in store.generations(sample_keys=wanted)}
    report.rows_read = len(parsed_rows)
    answers: dict[tuple[str, str], tuple[int, Answer]] = {}
    unanswered = 0
    for row_no, sks, row in parsed_rows:
        where = f"{path.name} row {row_no}"
        raw = (row.get(answer_col or "") or "").strip()
        if not raw:
            unanswered += 1
            continue
        if not sks or len(set(sks)) != len(sks):
            raise UsageError(f"{where}: sample_keys is empty or repeats a key: keep the cell as exported")
        item_key = (row.get(table.column("item") or "") or "").strip()
        if item_key != keys.plan_item_key(sks):
            raise UsageError(f"{where}: item does not match its sample_keys (edited?): keep both cells as exported")
        missing = [sk for sk in sks if sk not in generations]
        if missing:
            raise UsageError(f"{where}: sample key {missing[0][:40]!r} is not in store {store.path}: import into the "
                             "store the plan was drawn from (--store)")
        who_raw = (row.get(annotator_col or "") or "").strip() if annotator_col else ""
        try:
            who = check_annotator(who_raw) if who_raw else default_annotator
            if who is None:
                raise UsageError(f"{where}: no annotator: fill the annotator column or pass --annotator NAME")
        except AnswerError as exc:
            raise UsageError(f"{where}: {exc}") from None
        canonical = sorted(sks)
        first = generations[canonical[0]]
        pos = (row.get(table.column("position") or "") or "").strip()
        item = PlanItem(plan=(row.get(plan_col or "") or "").strip() if plan_col else "", item=item_key,
                        position=_position(pos), item_id=keys.item_id(first.prompt),
                        prompt_id=first.prompt_id, prompt=first.prompt, category=first.category,
                        outputs=tuple(PlanOutput(sk, generations[sk].output or "") for sk in canonical),
                        shown_order=tuple(canonical.index(sk) for sk in sks), strategy="plan-csv", seed=0)
        try:
            shown_codes = (strict_ranking(raw, item.n_contents) if rank_col
                           else parse_labels(raw.split(","), item.n_contents))
        except AnswerError as exc:
            raise UsageError(f"{where}: {exc}") from None
        answer = Answer(item, who, task, shown_codes, list(item.shown_order),
                        seconds=_seconds(row.get(seconds_col or "", "") if seconds_col else "", where),
                        source=SOURCE, extra={"row": row_no})
        key = (who, item_key)
        if key in answers:
            raise UsageError(f"{where}: {who} answered this item already at row {answers[key][0]}: keep one row per "
                             "annotator and item")
        answers[key] = (row_no, answer)
    ratings: list[Rating] = []
    for _row, collected in answers.values():
        ratings += ratings_for(collected, generations)
    report.exclude("rows without an answer yet", unanswered)
    return [], ratings, report
