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
                  comparison; XSTest compliance labels), or texts labelled alone, by flags or a label
  labels-jsonl    the same as JSON Lines (OpenAI's moderation evaluation set: a prompt and its flags)
  label-studio    Label Studio's JSON export of a project made from a labelling plan
  plan-csv        a filled tasks.csv of a labelling plan (spreadsheets, crowd platforms)

Options may follow the path: `PATH?flags=S,H,V&missing=negative` (labels-*: which 0/1 flags give the harm label,
and whether a missing flag is unknown or 0; harness.humans.query, harness.humans.flags). A file whose every row is
rejected is a UsageError naming the first reasons: nothing is imported and nothing is judged.

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

FORMATS = ["llm-harm", "rankings-csv", "rankings-jsonl", "pairwise-jsonl", "labels-csv", "labels-jsonl", "label-studio",
           "plan-csv"]
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
    if fmt in ("labels-csv", "labels-jsonl"):
        from harness.humans.labels import parse_labels

        return lambda path, store=None, **kw: parse_labels(path, store=store, fmt=fmt, **kw)
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
    """Parse one file or folder without writing: (generations, ratings, report). `store` is only read. The path may
    carry its format's options (`PATH?flags=S,H`, harness.humans.query); UsageError when every row is rejected."""
    from harness.humans.query import split_options

    parse = _parser(fmt)
    written, query = split_options(str(path), fmt)
    p = Path(written).expanduser()
    if not p.exists():
        raise UsageError(f"{p} does not exist: pass the path of the {fmt} file or folder")
    generations, ratings, report = parse(p, store=store, **{**options, **query})
    if report.rows_read == 0:
        raise UsageError(f"{p} holds no rows (only a header, or nothing): pass a {fmt} file with data")
    if report.rejected and not any(r.valid for r in ratings):
        raise UsageError(every_row_rejected(p, fmt, report))
    return generations, ratings, report


def every_row_rejected(path: Path, fmt: str, report: ImportReport, shown: int = 3) -> str:
    """The one line said when a file's rows were all rejected: how many, the first reasons, and the fix."""
    reasons = list(dict.fromkeys(r.reason for r in report.rejected))
    more = f"; and {len(reasons) - shown} other reason(s)" if len(reasons) > shown else ""
    first = "; ".join(f"{r.file} row {r.row}: {r.reason}" for r in
                      [next(x for x in report.rejected if x.reason == reason) for reason in reasons[:shown]])
    from harness.humans.query import FORMAT_OPTIONS

    options = FORMAT_OPTIONS.get(fmt, ())
    named = f" and its options ({', '.join(f'?{o}=' for o in options)}) are right" if options else ""
    return (f"{path}: every row was rejected ({report.rows_read} row(s) read, {len(report.rejected)} rejection(s); "
            f"{first}{more}), so nothing was imported: fix those rows, or check that it is a {fmt} file{named}")


def import_path(store: Any, fmt: str, path: str | Path, **options: Any) -> ImportReport:
    """Import one file or folder in format `fmt` into an open Store; see the module docstring."""
    generations, ratings, report = parse_path(fmt, path, store=store, **options)
    return write_parsed(store, generations, ratings, report)


__all__ = ["COLLECTED_FORMATS", "FORMATS", "ImportReport", "every_row_rejected", "import_path", "parse_path",
           "write_parsed"]
