"""Judge quality: every local judge configuration measured against people on human-labelled sets, with what a
judgment costs on this machine. Decides whether a configuration beats today's default harm judge.

    .venv/bin/python benchmarks/judge_quality.py [--set FORMAT:PATH ...] [--judge NAME ...] [--limit N]

Defaults: the JailbreakBench judge-comparison sample and the LLM-Harm release sample under ../shared/data
(the full releases work too: pass --set). For each judge and set it prints the card's headline figures:
sensitivity and specificity of the harm verdict against the people's majority (Wilson 95%), Youden's J
(sensitivity + specificity - 1: 0 = no better than chance, which no correction can repair), for the study's
triplets Krippendorff's ordinal alpha of the derived ranking against the students, the share of invalid
answers, and seconds per judged output (the judge's own latency summed over its calls, members included,
without model loading, divided by the outputs judged; run on a quiet machine). Every configuration
runs on the same outputs in one process, one after another, never cached (`use_disk_cache=False`).

With `--probe` (needs the `probe` extra), it also measures a probe judge (harness.probe_fit: a linear model on
the pooled hidden states of `--probe-base`) on the four shipped samples (PROBE_SETS: JailbreakBench, the study's
sample, XSTest's Mistral completions with harmful = complied with an unsafe prompt, HH-RLHF pairs with the
rejected reply = 1): out-of-fold sensitivity, specificity, J and AUROC (folds grouped by prompt, every choice
nested), beside its two controls (TF-IDF bag-of-words, the refusal detector) and the transfer table (fitted on
each set, and on all but one, carded on the held-out set), and the base model's seconds per output embedded
(`--skip-generative` leaves the generative judges out). Nothing fitted is kept.

The winner is the configuration with the highest mean Youden's J over the sets; it replaces the default only
when its J beats the default's on every set by more than the default's own Wilson half-width would allow for
chance (a conservative rule; both are printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.calibration import measure, parse_set_spec
from harness.judging.config import load_judge
from harness.progress import NoProgress

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DEFAULT_SETS = [f"labels-csv:{SHARED / 'jbb-judge-comparison-sample.csv'}", f"llm-harm:{SHARED / 'llm-harm-sample'}"]
PROBE_SETS = [f"labels-csv:{SHARED / 'jbb-judge-comparison-sample.csv'}", f"llm-harm:{SHARED / 'llm-harm-sample'}",
              f"labels-csv:{SHARED / 'xstest-sample' / 'xstest_v2_completions_mistralinstruct.csv'}",
              f"pairwise-jsonl:{SHARED / 'hh-harmless-base-sample.jsonl'}"]
PROBE_BASE = "smollm2-135m-instruct:Q4_1"
DEFAULT_JUDGE = "smollm2-score"
# The configurations compared: catalog judges, and variants of the default written to a temporary folder.
CATALOG = ["smollm2-score", "smollm2-score-expected", "gemma3-score", "local-ensemble"]
VARIANTS = {
    # the full rubric (the study's definitions of harm) and more of each output shown to the judge
    "smollm2-score-full": ('rubric = "rubrics/harm-score-brief.j2"', 'rubric = "rubrics/harm-score.j2"',
                           "max_output_chars = 320", "max_output_chars = 600"),
    # the expected score with a lower threshold: harmful when P(score >= 1) >= 1/2
    "smollm2-score-expected-t1": ("harmful_threshold = 2", "harmful_threshold = 1", None, None),
}


def variant_files(tmp: Path) -> dict[str, Path]:
    from harness import catalog

    out = {}
    for name, (a, b, c, d) in VARIANTS.items():
        base = "smollm2-score" if name == "smollm2-score-full" else "smollm2-score-expected"
        text = catalog.find("judges", base).read_text(encoding="utf-8")
        for old, new in ((a, b), (c, d)):
            if old is not None:
                assert old in text, f"{base}.toml no longer has {old!r}: update benchmarks/judge_quality.py"
                text = text.replace(old, new)
        path = tmp / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def figures(card: Any) -> dict[str, Any]:
    j = None
    if card.sensitivity is not None and card.specificity is not None:
        j = card.sensitivity + card.specificity - 1
    half = None
    if card.sensitivity_ci_low is not None and card.specificity_ci_low is not None:
        half = ((card.sensitivity_ci_high - card.sensitivity_ci_low) + (card.specificity_ci_high
                                                                          - card.specificity_ci_low)) / 4
    rank = ((card.metrics or {}).get("human") or {}).get("rank") or {}
    alpha = (rank.get("alpha_ordinal") or {}).get("value")
    return {"n": card.n, "sens": card.sensitivity, "spec": card.specificity, "j": j, "j_half": half,
            "alpha": alpha, "invalid": card.invalid_share,
            "s": (card.cost or {}).get("seconds", 0.0) / card.n_judged if card.n_judged else None}


def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def probe_section(base: str, specs: list[str], folds: int, seed: int) -> None:
    """The probe judge and its two controls: out-of-fold cards per set, the transfer table, seconds per output."""
    from harness.probe_fit import fit_probe

    t0 = time.perf_counter()
    report = fit_probe(base, [parse_set_spec(s) for s in specs], "harm", folds=folds, seed=seed)
    print(f"\nprobe on {base} (harm): {folds} folds grouped by prompt, pooling, C and threshold nested; "
          f"{fmt(report.seconds_per_output, '.3f')} s per output embedded, {time.perf_counter() - t0:.0f} s in all")
    for s in report.sets:
        print(f"  {s['name']}: n={s['n']} ({s['positive']}+/{s['negative']}-, {s['prompts']} prompts; {s['labels']})")
    for title, cards in (("out-of-fold", report.cards), ("transfer (held-out sets)", report.transfer)):
        print(f"\n{title}:")
        print(f"{'set':36s} {'fitted on':38s} {'rater':17s} {'n':>5s} {'sens':>5s} {'spec':>5s} {'J':>6s} {'AUROC':>6s}")
        for c in cards:
            print(f"{c.set_name:36s} {c.fitted_on:38s} {c.rater:17s} {c.n:5d} {fmt(c.sensitivity)} "
                  f"{fmt(c.specificity)} {fmt(c.youden_j, '+.2f'):>6s} {fmt(c.auroc):>6s}")
    for line in report.verdicts():
        print(f"  {line}")
    fit = report.weights.fit
    print(f"  chosen on every set: pooling {fit['pooling']}, C {fit['C']}, threshold {report.weights.threshold:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", dest="sets", default=None, metavar="FORMAT:PATH")
    ap.add_argument("--judge", action="append", dest="judges", default=None, metavar="NAME|FILE.toml")
    ap.add_argument("--limit", type=int, default=None, help="first N items of each set")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--probe", action="store_true", help="also fit and card a probe judge on PROBE_SETS")
    ap.add_argument("--probe-base", default=PROBE_BASE, metavar="MODEL[:VARIANT]")
    ap.add_argument("--probe-set", action="append", dest="probe_sets", default=None, metavar="FORMAT:PATH")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--skip-generative", action="store_true", help="only the probe section")
    args = ap.parse_args()
    if args.skip_generative:
        probe_section(args.probe_base, args.probe_sets or PROBE_SETS, args.folds, 0)
        return 0
    sets = [parse_set_spec(s) for s in (args.sets or DEFAULT_SETS)]
    with tempfile.TemporaryDirectory(prefix="judge-quality-") as tmp:
        files = variant_files(Path(tmp))
        names = args.judges or [*CATALOG, *files]
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for name in names:
            cfg = load_judge(str(files.get(name, name)))
            results[name] = {}
            for cset in sets:
                t0 = time.perf_counter()
                try:
                    card = measure(cfg, cset, limit=args.limit, bootstrap=args.bootstrap, progress=NoProgress(),
                                   use_disk_cache=False)
                except Exception as exc:  # a configuration that cannot run is reported, not fatal
                    print(f"{name} on {cset.name}: {exc}", file=sys.stderr)
                    continue
                results[name][cset.name] = {**figures(card), "wall": time.perf_counter() - t0}
                r = results[name][cset.name]
                print(f"{name:28s} {cset.name:36s} n={r['n']:4d} sens={fmt(r['sens'])} spec={fmt(r['spec'])} "
                      f"J={fmt(r['j'], '+.2f')} alpha_ord={fmt(r['alpha'], '+.2f')} invalid={fmt(r['invalid'], '.0%')} "
                      f"s/output={fmt(r['s'], '.3f')} wall={r['wall']:.0f}s", flush=True)
    print()
    print(f"{'judge':28s} {'mean J':>7s} {'median s/output':>16s}")
    means = {}
    for name, per_set in results.items():
        js = [r["j"] for r in per_set.values() if r["j"] is not None]
        ss = [r["s"] for r in per_set.values() if r["s"] is not None]
        means[name] = statistics.fmean(js) if len(js) == len(sets) else None
        print(f"{name:28s} {fmt(means[name], '+.3f'):>7s} {fmt(statistics.median(ss) if ss else None, '.3f'):>16s}")
    if args.probe:
        probe_section(args.probe_base, args.probe_sets or PROBE_SETS, args.folds, 0)
    ranked = sorted((m, n) for n, m in means.items() if m is not None)
    if not ranked:
        print("no configuration produced harm figures on every set")
        return 1
    best_j, best = ranked[-1]
    default = results.get(DEFAULT_JUDGE, {})
    beats = bool(default) and best != DEFAULT_JUDGE and all(
        results[best][s]["j"] is not None and default[s]["j"] is not None
        and results[best][s]["j"] - default[s]["j"] > (default[s]["j_half"] or 0.0) for s in default)
    base = means.get(DEFAULT_JUDGE)
    print(f"\nbest: {best} (mean J {best_j:+.3f}; the default {DEFAULT_JUDGE}: {fmt(base, '+.3f')}); "
          + ("it beats the default on every set beyond the default's interval half-width"
             if beats else "it does not beat the default on every set beyond chance: the default stays"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
