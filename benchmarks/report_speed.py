"""How long `write_report` takes on a large store: 100,000 generations, 300,000 judgments and ratings.

Builds a synthetic store (bulk executemany inside one transaction per table), then times
`harness.reporting.write_report` on it, stage by stage, and prints the times (medians of --repeat runs).

    .venv/bin/python benchmarks/report_speed.py [--generations 100000] [--repeat 3] [--keep DIR]

The store holds 2 devices x 3 models x 4 variants, 150 prompts (110 harmful, 40 benign) and as many seeds as
needed; per generation one score judgment (judge `smollm2-score`), one refusal judgment (`refusal-detector`)
and one external judge label (`gpt-4o-mini`), each with its judgment row and its rating row; 1 % of
the score ratings are invalid. Humans label 3,000 generations and rank the outputs of 3 external
models on 300 prompts (the study's shape), so the judge panel and the study's figures are computed too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.keys import item_id as item_id_for_prompt
from harness.records import Generation, Judgment, Rating
from harness.store import Store

DEVICES = ["laptop-cpu", "raspberry-pi-5"]
MODELS = {"smollm2-135m-instruct": 0.30, "gemma3-270m": 0.20, "tiny-llm-1b": 0.10}  # base harm rate
VARIANTS = {"F16": (1.0, 1.00), "Q8_0": (0.53, 1.05), "Q4_K_M": (0.30, 1.20), "Q2_K": (0.20, 1.60)}  # size, harm x
CATEGORIES = ["discriminatory_or_biased_language", "offensive_content", "promotion_of_harm", "privacy_invasion",
              "negative_influence"]


def _insert(store: Store, cls: type, rows: list[dict]) -> None:  # type: ignore[type-arg]
    store.add(cls(**r) for r in rows)


def build_store(path: Path, n_generations: int, seed: int = 0) -> dict[str, int]:
    rnd = random.Random(seed)
    store = Store.open(path)
    prompts = [(f"h-{i:03d}", f"harmful prompt number {i} about {CATEGORIES[i % 5]}", CATEGORIES[i % 5], 0)
               for i in range(110)]
    prompts += [(f"b-{i:03d}", f"benign control number {i}", "benign", 1) for i in range(40)]
    variants = [(d, m, v) for d in DEVICES for m in MODELS for v in VARIANTS]
    per_variant = -(-n_generations // len(variants))
    now = time.time()
    gens, judgments, ratings = [], [], []
    n = n_human = 0
    for device, model, variant in variants:
        size, harm_x = VARIANTS[variant]
        base_tps = (40 if device == "laptop-cpu" else 12) / size ** 0.7
        for k in range(per_variant):
            if n >= n_generations:
                break
            pid, text, category, benign = prompts[k % len(prompts)]
            seed_k = k // len(prompts)
            key = f"g{n:07d}"
            item = item_id_for_prompt(text)
            gens.append({
                "sample_key": key, "run_id": "bench-run", "created_at": now, "device": device, "model": model,
                "variant": variant, "backend": "gguf", "model_size_bytes": int(size * 500e6), "prompt_id": pid,
                "category": category, "benign": benign, "prompt": text, "prompt_sha256": f"{k % len(prompts):064d}",
                "seed": seed_k, "output": "lorem ipsum " * 25, "n_prompt_tokens": 20, "n_output_tokens": 64,
                "ttft_s": rnd.uniform(0.05, 0.3) * size, "decode_tps": rnd.gauss(base_tps, base_tps * 0.05),
                "latency_s": rnd.uniform(1.5, 4.0) * size, "peak_rss_bytes": int(size * 600e6 + rnd.uniform(0, 5e6)),
                "energy_j": None,
            })
            p_harm = 0.0 if benign else min(0.95, MODELS[model] * harm_x)
            truly_harmful = rnd.random() < p_harm
            for judge, mode, task in (("smollm2-score", "score", "score"), ("refusal-detector", "refusal", "refusal"),
                                      ("gpt-4o-mini", "score", "label")):
                jkey = f"{judge}:{key}"
                judgments.append({
                    "judgment_key": jkey, "created_at": now, "judge": judge,
                    "judge_kind": "external-judge" if judge == "gpt-4o-mini" else "judge", "judge_model": judge,
                    "mode": mode, "item_id": item, "sample_keys": [key], "raw_response": "Score: 2. Because ...",
                    "n_input_tokens": 180, "n_output_tokens": 12, "latency_s": rnd.uniform(0.2, 0.8),
                    "cost_usd": 0.0001 if judge == "gpt-4o-mini" else None,
                })
                row = {"rating_key": f"r:{jkey}", "created_at": now, "source": f"judge:{judge}", "rater": judge,
                       "rater_kind": "external-judge" if judge == "gpt-4o-mini" else "judge", "task": task,
                       "item_id": item, "prompt_id": pid, "category": category, "model": model, "variant": variant,
                       "sample_key": key, "judgment_key": jkey, "valid": 1}
                if task == "refusal":
                    refused = (not truly_harmful) and rnd.random() < (0.1 if benign else 0.6)
                    row["label"] = "refusal" if refused else "compliance"
                else:
                    flip = rnd.random() < (0.1 if judge == "smollm2-score" else 0.05)
                    verdict = int(truly_harmful != flip)
                    row["harmful"] = verdict
                    row["code"] = 2.0 * verdict + rnd.choice([0, 1]) if task == "score" else None
                    row["label"] = None if task == "score" else ("harmful" if verdict else "not_harmful")
                    if judge == "smollm2-score" and rnd.random() < 0.01:
                        row.update(valid=0, harmful=None, code=None, error="unparseable")
                ratings.append(row)
            if n % 33 == 0 and n_human < 3000:
                n_human += 1
                ratings.append({"rating_key": f"h:{key}", "created_at": now, "source": "import:bench", "rater": "human",
                                "rater_kind": "human", "annotator": "a1", "task": "label", "item_id": item,
                                "prompt_id": pid, "category": category, "model": model, "variant": variant,
                                "sample_key": key, "harmful": int(truly_harmful), "valid": 1,
                                "label": "harmful" if truly_harmful else "not_harmful"})
            n += 1
    # the study's shape: humans rank 3 external models' outputs on 300 prompts
    for i in range(300):
        item = item_id_for_prompt(f"study prompt {i}")
        codes = rnd.sample([0, 1, 2, 3], 3)
        for model, code in zip(("mistral-7b", "mpt-7b", "stablelm-7b"), codes):
            ratings.append({"rating_key": f"s:{i}:{model}", "created_at": now, "source": "import:bench",
                            "rater": "human", "rater_kind": "human", "annotator": f"g{i % 3}", "task": "rank",
                            "item_id": item, "model": model, "variant": None, "code": float(code),
                            "harmful": int(code > 0), "valid": 1})
    _insert(store, Generation, gens)
    _insert(store, Judgment, judgments)
    _insert(store, Rating, ratings)
    counts = {"generations": store.count("generations"), "judgments": store.count("judgments"),
              "ratings": store.count("ratings")}
    store.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for agreement intervals")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the store and report here")
    args = ap.parse_args(argv)

    from harness.reporting import _report
    from harness.reporting._data import load
    from harness.reporting._judges import build_panel
    from harness.reporting._tables import build

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="report-speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.sqlite"
    if path.exists():
        path.unlink()
    t0 = time.perf_counter()
    counts = build_store(path, args.generations)
    print(f"built store in {time.perf_counter() - t0:.1f} s: {counts['generations']:,} generations, "
          f"{counts['judgments']:,} judgments, {counts['ratings']:,} ratings ({path.stat().st_size / 1e6:.0f} MB)")

    stages: dict[str, list[float]] = {"load": [], "tables": [], "judge panel": [], "write_report (total)": []}
    store = Store.open(path)
    try:
        for i in range(args.repeat):
            t = time.perf_counter()
            data = load(store)
            stages["load"].append(time.perf_counter() - t)
            t = time.perf_counter()
            tables = build(data)
            stages["tables"].append(time.perf_counter() - t)
            t = time.perf_counter()
            build_panel(store, data.selection, tables.rate_tables.harm if tables.rate_tables else [], args.bootstrap)
            stages["judge panel"].append(time.perf_counter() - t)
            t = time.perf_counter()
            html = _report.write_report(store, folder / "report", bootstrap=args.bootstrap)
            stages["write_report (total)"].append(time.perf_counter() - t)
            print(f"run {i + 1}: write_report {stages['write_report (total)'][-1]:.1f} s", file=sys.stderr)
    finally:
        store.close()
    print(f"median of {args.repeat} run(s), bootstrap {args.bootstrap}:")
    for name, times in stages.items():
        print(f"  {name:<22} {statistics.median(times):6.2f} s")
    total = statistics.median(stages["write_report (total)"])
    print(f"write_report on {counts['generations']:,} generations / {counts['judgments']:,} judgments / "
          f"{counts['ratings']:,} ratings: {total:.1f} s ({'under' if total < 60 else 'OVER'} the 60 s budget); "
          f"report.html {html.stat().st_size / 1e6:.2f} MB")
    return 0 if total < 60 else 1


if __name__ == "__main__":
    raise SystemExit(main())
