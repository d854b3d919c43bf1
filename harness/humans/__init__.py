"""Import human (and third-party judge) ratings into the store: one importer per file format.

`import_path(store, fmt, path, **options)` parses the file(s) completely first (a bad file raises a
UsageError before anything is written), then writes generations and ratings with INSERT OR IGNORE
on deterministic keys, so importing twice adds nothing. It returns an ImportReport: rows read,
ratings and generations written, repairs (encoding, ranking spellings, renumbering) and rejected
rows with their row numbers and reasons.

Formats (see each module's docstring):
  llm-harm        the study's release: group rankings, expert rankings, judge predictions
  rankings-csv    generic long (one row per output) or wide (one row per item) rankings / scores
  rankings-jsonl  the same as JSON Lines
  pairwise-jsonl  chosen / rejected preference pairs (HH-RLHF harmless-base format)
  labels-csv      per-response labels by several annotators and judges (JailbreakBench judge
                  comparison; XSTest compliance labels)
  label-studio    Label Studio's JSON export of a project made from a labelling plan
  plan-csv        a filled tasks.csv of a labelling plan (spreadsheets, crowd platforms)

The last two are labels collected on this store's own outputs (harness.humans.plan): they need the
store the plan was drawn from, and re-importing a newer export updates answers that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.humans.report import ImportReport
from harness.records import Generation, Rating

FORMATS = ["llm-harm", "rankings-csv", "rankings-jsonl", "pairwise-jsonl", "labels-csv", "label-studio", "plan-csv"]
COLLECTED_FORMATS = ("label-studio", "plan-csv")  # labels of this store's outputs: need the store, update answers

Parsed = tuple[list[Generation], list[Rating], ImportReport]


def _parser(fmt: str) -> Callable[..., Parsed]:
    if fmt == "llm-harm":
        from harness.humans.llm_harm import parse_release

        return parse_release
    if fmt in ("rankings-csv", "rankings-jsonl"):
        from harness.humans.generic import parse_rankings

        return lambda path, store=None, **kw: parse_rankings(path, fmt, store=store, **kw)
    if fmt == "pairwise-jsonl":
        from harness.humans.pairwise import parse_pairwise

        return parse_pairwise
    if fmt == "labels-csv":
        from harness.humans.labels import parse_labels

        return parse_labels
    if fmt == "label-studio":
        from harness.humans.labelstudio import parse_export

        return parse_export
    if fmt == "plan-csv":
        from harness.humans.sheets import parse_sheet

        return parse_sheet
    raise UsageError(f"unknown import format '{fmt}': use one of {', '.join(FORMATS)}")


def write_parsed(store: Any, generations: list[Generation], ratings: list[Rating],
                 report: ImportReport, *, update: bool = False) -> ImportReport:
    """Write parsed rows (existing keys are kept) and fill the written counts of the report. With `update`, a
    stored rating whose answer changed (code, verdict, label, validity) is replaced and counted as updated."""
    unique_ratings = {r.rating_key: r for r in ratings}
    unique_generations = {g.sample_key: g for g in generations}
    report.ratings_built = len(unique_ratings)
    report.generations_built = len(unique_generations)
    changed: list[Rating] = []
    if update and unique_ratings:
        stored = store.stored_rating_keys(list(unique_ratings))
        if stored:
            sample_keys = sorted({r.sample_key for k, r in unique_ratings.items() if k in stored and r.sample_key})
            before = {r.rating_key: r for r in store.ratings(sample_keys=sample_keys) if r.rating_key in stored}
            changed = [r for k, r in unique_ratings.items() if k in before and _answer(before[k]) != _answer(r)]
    report.generations_written = store.add(unique_generations.values())
    report.ratings_written = store.add(unique_ratings.values())
    if changed:
        store.add(changed, replace=True)
        report.ratings_updated = len(changed)
    return report


def _answer(r: Rating) -> tuple[Any, ...]:
    return (r.code, r.harmful, r.label, r.valid)


def parse_path(fmt: str, path: str | Path, store: Any = None, **options: Any) -> Parsed:
    """Parse one file or folder without writing: (generations, ratings, report). `store` is only read."""
    parse = _parser(fmt)
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{p} does not exist: pass the path of the {fmt} file or folder")
    generations, ratings, report = parse(p, store=store, **options)
    if report.rows_read == 0:
        raise UsageError(f"{p} holds no rows (only a header, or nothing): pass a {fmt} file with data")
    return generations, ratings, report


def import_path(store: Any, fmt: str, path: str | Path, **options: Any) -> ImportReport:
    """Import one file or folder in format `fmt` into an open Store; see the module docstring."""
    generations, ratings, report = parse_path(fmt, path, store=store, **options)
    return write_parsed(store, generations, ratings, report)


__all__ = ["COLLECTED_FORMATS", "FORMATS", "ImportReport", "import_path", "parse_path", "write_parsed"]
