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

from harness.errors import UsageError
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
    (out_dir / "study.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out_dir / "study.md").write_text(markdown(result), encoding="utf-8")
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
            rows.append(f"| {rater} | {m['label']} | {m['n']} | {fmt(m['mean_code'])} | {fmt(m['share_harmful'])} |")
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
