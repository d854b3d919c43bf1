"""Reproduce "Can LLMs Rank the Harmfulness of Smaller LLMs? We are Not There Yet" (Atil et al., WOAH 2025).

`reproduce(release, out_dir)` imports the public release (or a sample of it) into a fresh store
inside `out_dir`, then computes the human model harm ranking (code shares, mean code, share harmful,
rank histogram over items with no N/A, pairwise "less harmful" wins, Friedman and sign tests), the
same figures for the expert and each judge, and the agreement tables: judge vs human (students and
expert), judge vs judge, and human vs expert. It writes `study.json` and `study.md` into `out_dir`.

Default: Group 10 is read on the reverse scale (1 = most harmful), as the study's own preprocessing
does; pass `reverse_groups=()` to read every group as 3 = most harmful.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import safetext
from harness.errors import UsageError
from harness.outputs import write_text
from harness.records import HUMAN_KINDS

DEFAULT_OUT = Path("results") / "study"
STORE_NAME = "study.sqlite"


def fresh_store_path(out_dir: Path) -> Path:
    """The study's own store inside out_dir, emptied (with its WAL files) so every run starts fresh."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / STORE_NAME
    for p in (path, path.with_name(STORE_NAME + "-wal"), path.with_name(STORE_NAME + "-shm")):
        if p.exists():
            p.unlink()
    return path


def split_agreement(rows: list[dict[str, Any]], kinds: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Agreement rows grouped as judge_vs_human, judge_vs_judge, human_vs_expert (and within_rater)."""
    out: dict[str, list[dict[str, Any]]] = {"judge_vs_human": [], "judge_vs_judge": [], "human_vs_expert": [],
                                            "within_rater": []}
    for r in rows:
        ka, kb = kinds.get(r["a"].split(":")[0], ""), kinds.get(r["b"].split(":")[0], "")
        if r["a"].split(":")[0] == r["b"].split(":")[0]:
            out["within_rater"].append(r)
        elif ka in HUMAN_KINDS and kb in HUMAN_KINDS:
            out["human_vs_expert"].append(r)
        elif (ka in HUMAN_KINDS) != (kb in HUMAN_KINDS):
            out["judge_vs_human"].append(r)
        else:
            out["judge_vs_judge"].append(r)
    return out


def reproduce(release: Path, out_dir: Path = DEFAULT_OUT, reverse_groups: tuple[int, ...] | None = None,
              bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    from harness.agreement import agreement_table, model_harm_ranking
    from harness.humans import import_path
    from harness.humans.llm_harm import DEFAULT_REVERSE_GROUPS
    from harness.store import Store

    if not release.exists():
        raise UsageError(f"{release} does not exist: pass the folder of the LLM-Harm release (or its sample)")
    groups = DEFAULT_REVERSE_GROUPS if reverse_groups is None else tuple(reverse_groups)
    store_path = fresh_store_path(out_dir)
    with Store.open(store_path) as store:
        report = import_path(store, "llm-harm", release, reverse_groups=set(groups))
        kinds = store.raters()
        if "human" not in kinds:
            raise UsageError(f"{release} has no student group files (raw_submissions/output_Group_N.csv): "
                             "pass the release folder")
        human = model_harm_ranking(store, rater="human")
        others = {r: model_harm_ranking(store, rater=r) for r in sorted(kinds) if r != "human"}
        rows = agreement_table(store, bootstrap=bootstrap, seed=seed, task="rank")
    result = {
        "study": "Atil et al., WOAH 2025: Can LLMs Rank the Harmfulness of Smaller LLMs? We are Not There Yet",
        "release": str(release),
        "store": str(store_path),
        "settings": {"reverse_groups": list(groups), "bootstrap": bootstrap, "seed": seed, "rbo_p": 0.9,
                     "rbo_variant": "extrapolated (Webber et al. 2010, eq. 32)",
                     "rbo_both_empty": 1.0, "rbo_one_empty": 0.0},
        "import": report.to_dict(),
        "raters": kinds,
        "human_ranking": human,
        "rater_rankings": others,
        "agreement": split_agreement(rows, kinds),
    }
    write_text(out_dir / "study.json", json.dumps(result, indent=2))
    write_text(out_dir / "study.md", markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    from harness.agreement.render import agreement_markdown, fmt, ranking_markdown

    s = result["settings"]
    imp = result["import"]
    parts = [
        "# Study reproduction: " + result["study"],
        f"Release: `{result['release']}`. Groups read on the reverse scale (1 = most harmful): "
        f"{', '.join(map(str, s['reverse_groups'])) or 'none'}. Codes: 0 = not harmful (N/A), 1..3 = least..most "
        "harmful within the prompt.",
        f"Import: {imp['rows_read']} rows read, {imp['ratings_built']} ratings ({imp['invalid_ratings']} invalid), "
        f"{len(imp['rejected'])} rows rejected; repairs: "
        + (", ".join(f"{k} x{v}" for k, v in imp["repaired"].items()) or "none") + ".",
        "## Human model harm ranking (students)",
        ranking_markdown(result["human_ranking"]),
        "## Model harm by rater (mean code / share harmful)",
    ]
    rows = []
    for rater, r in {"human": result["human_ranking"], **result["rater_rankings"]}.items():
        for m in r["models"]:
            rows.append(f"| {safetext.markdown(rater)} | {safetext.markdown(m['label'])} | {m['n']} | {fmt(m['mean_code'])} | {fmt(m['share_harmful'])} |")
    parts.append("| rater | model | n | mean code | share harmful |\n|---|---|---|---|---|\n" + "\n".join(rows))
    titles = {"judge_vs_human": "Judge vs human agreement", "judge_vs_judge": "Judge vs judge agreement",
              "human_vs_expert": "Students vs expert agreement"}
    for key, title in titles.items():
        rows_ = result["agreement"][key]
        parts.append(f"## {title}")
        parts.append(agreement_markdown(rows_) if rows_ else "(no pairs)")
    parts.append(f"RBO: {s['rbo_variant']}, p = {s['rbo_p']}; both lists empty = {s['rbo_both_empty']}, one empty = "
                 f"{s['rbo_one_empty']}. Intervals: 95% percentile bootstrap over prompts, {s['bootstrap']} resamples, "
                 f"seed {s['seed']}.")
    return "\n\n".join(parts) + "\n"


# -- the study as a judge benchmark (`harness study judge`) ------------------------------------------
STUDY_JUDGE_LABELS = {"gpt4o": "GPT-4o (study)", "sonnet": "Claude Sonnet (study)", "llama": "Llama (study)"}
RANK_COLUMNS = ("alpha_ordinal", "alpha_interval", "rbo", "kendall_tau_b", "exact_match")
HARM_COLUMNS = ("sensitivity", "specificity")
REFERENCE_LABELS = {"human": "students", "expert": "expert"}
COLUMN_LABELS = {"alpha_ordinal": "alpha ordinal", "alpha_interval": "alpha interval", "rbo": "RBO",
                 "kendall_tau_b": "tau-b", "exact_match": "exact", "sensitivity": "sensitivity",
                 "specificity": "specificity"}


def _row(judge: str, label: str, reference: str, block: dict[str, Any], invalid: int | None) -> dict[str, Any]:
    rank = block.get("rank") or {}
    harm = block.get("harm") or {}
    ns = [int(v["n"]) for v in rank.values() if isinstance(v, dict) and v.get("n") is not None]
    return {"judge": judge, "label": label, "reference": reference, "n": max(ns) if ns else 0, "invalid": invalid,
            **{m: rank.get(m) for m in RANK_COLUMNS}, **{m: harm.get(m) for m in HARM_COLUMNS}}


def judge_benchmark(release: Path, cfg: Any, *, limit: int | None = None, bootstrap: int = 1000, seed: int = 0,
                    progress: Any = None, use_disk_cache: bool = True) -> dict[str, Any]:
    """The study's question asked of one judge: it ranks the release's triplets (its own rank answers, or
    ranks derived from its per-output scores), and its agreement with the students and the expert is set under
    the study's judges' (GPT-4o, Sonnet, Llama, from the release) computed on the same triplets.

    Returns {"card": the judge's card on the release, "rows": one row per (reference, judge)}; the card's
    position bias is measured when cfg.order is "balanced"."""
    from harness.calibration import CalibrationSet, measure, parse_set_spec

    if not release.exists():
        raise UsageError(f"{release} does not exist: pass the folder of the LLM-Harm release (or its sample)")
    if cfg.mode not in ("rank", "score", "ensemble"):
        raise UsageError(f"judge '{cfg.name}' is a {cfg.mode} judge: the study's task is ranking harm; use a rank or "
                         "score judge (e.g. --judge smollm2-rank)")
    cset: CalibrationSet = parse_set_spec(f"llm-harm:{release}")
    card = measure(cfg, cset, limit=limit, bootstrap=bootstrap, seed=seed, progress=progress,
                   use_disk_cache=use_disk_cache)
    rows = []
    metrics: dict[str, Any] = card.metrics or {}
    theirs: dict[str, Any] = card.study_judges or {}
    refs = [r for r in ("human", "expert") if r in metrics] + sorted(set(metrics) - {"human", "expert"})
    for ref in refs:
        for name in (*[j for j in STUDY_JUDGE_LABELS if j in theirs], *sorted(set(theirs) - set(STUDY_JUDGE_LABELS))):
            block = theirs[name].get(ref)
            if block:
                rows.append(_row(name, STUDY_JUDGE_LABELS.get(name, name), ref, block, None))
        rows.append(_row(card.judge, f"{card.judge} (this run)", ref, metrics[ref], card.n_invalid))
    return {"release": str(release), "judge": card.judge, "mode": card.mode, "order": cfg.order, "limit": limit,
            "card": card, "rows": rows, "settings": {"bootstrap": bootstrap, "seed": seed}}


def cell_text(v: dict[str, Any] | None) -> str:
    from harness.agreement.render import cell

    return "-" if not v or v.get("value") is None else cell(v)


def columns() -> list[str]:
    """The benchmark table's header."""
    return ["vs", "judge", "n triplets", "invalid", *(COLUMN_LABELS[m] for m in (*RANK_COLUMNS, *HARM_COLUMNS))]


def row_cells(r: dict[str, Any]) -> list[str]:
    """One benchmark row as text cells, in columns() order."""
    return [REFERENCE_LABELS.get(r["reference"], r["reference"]), r["label"], str(r["n"]),
            "-" if r["invalid"] is None else str(r["invalid"]), *(cell_text(r[m]) for m in (*RANK_COLUMNS, *HARM_COLUMNS))]


def benchmark_markdown(result: dict[str, Any]) -> str:
    card = result["card"]
    header = columns()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["rows"]:
        cells = row_cells(r)
        lines.append("| " + " | ".join(safetext.markdown(c) for c in cells) + " |")
    bias = card.position_bias
    parts = [f"# The study's task, judged by {safetext.markdown(card.judge)}",
             f"Release `{result['release']}`; {card.n_judged} outputs judged ({card.n_invalid} invalid), "
             f"mode {card.mode}, order {result['order']}"
             + (f", a seeded sample of {result['limit']} triplets stratified over the student groups"
                if result["limit"] else "") + ".",
             "\n".join(lines),
             "Intervals: 95% percentile bootstrap over triplets; sensitivity and specificity of the harm verdict "
             "(rank 0 = not harmful) with Wilson intervals. The study's judges are computed on the same triplets."]
    if bias:
        parts.append("Position bias: " + json.dumps(bias))
    if card.note:
        parts.append(f"Note: {card.note}")
    return "\n\n".join(parts) + "\n"
