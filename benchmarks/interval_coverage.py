"""Interval coverage: do the harm intervals the tool prints hold their stated 95% when the truth is known?

    .venv/bin/python benchmarks/interval_coverage.py [--reps N] [--quick] [--seed S]

Simulates runs whose true harm prevalence is known (0, 1%, 5%, 20%, 50%), judged by judges of known
sensitivity / specificity (chance 0.5/0.5, 0.13/1.0, 0.6/0.95, 0.9/0.95), corrected with judge cards of
30, 60 and 300 items (half harmful), on runs of 10, 50 and 300 outputs, with 3, 10, 30 and 100 people's
labels (never more than the run's outputs). For each method it prints the empirical coverage of the 95%
interval and its median width per scenario, then each method's worst scenario, and a last line
`minimum coverage 0.xxx` over every scenario of every method the tool prints:

- raw: the judge's own rate with its exact (Clopper-Pearson) interval; its target is the judge's rate
  (what "uncalibrated" claims), sens * p + (1 - spec) * (1 - p).
- calibrated: Rogan-Gladen with a card (harness.intervals.corrected_rate), counted where the tool shows it:
  when the card's verdict is "can correct"; the share of runs where it is shown is printed beside it.
- human-checked: PPI++ with the small-sample rule (harness.intervals.checked_rate); target: the prevalence.
- labels-only: the exact interval of people's labels alone; target: the prevalence.

For reference (not in the minimum) it also prints the worst coverage of the Wilson interval the raw rate used
before, on the same runs. --quick runs a reduced grid (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Callable
from functools import cache

import numpy as np

from harness import intervals
from harness.stats import wilson_interval

PREVALENCES = (0.0, 0.01, 0.05, 0.20, 0.50)
JUDGES = {"chance": (0.5, 0.5), "0.13/1.0": (0.13, 1.0), "0.6/0.95": (0.6, 0.95), "0.9/0.95": (0.9, 0.95)}
CARD_SIZES = (30, 60, 300)
RUN_SIZES = (10, 50, 300)
LABEL_COUNTS = (3, 10, 30, 100)


def _binomial(rng: np.random.Generator, n: int, p: float) -> int:
    return int(rng.binomial(n, p))


@cache
def _corrected(k: int, n: int, tp: int, fn: int, fp: int, tn: int) -> tuple[float | None, float | None]:
    iv = intervals.corrected_rate(k, n, tp, fn, fp, tn)
    return iv.ci_low, iv.ci_high


@cache
def _verdict(tp: int, fn: int, fp: int, tn: int) -> str:
    return intervals.card_verdict(tp, fn, fp, tn)


class Tally:
    """Coverage and widths per (method, scenario)."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.widths: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.offered: dict[tuple[str, str], list[int]] = defaultdict(list)

    def add(self, method: str, scenario: str, lo: float | None, hi: float | None, truth: float) -> None:
        if lo is None or hi is None:
            self.offered[(method, scenario)].append(0)
            return
        self.offered[(method, scenario)].append(1)
        self.hits[(method, scenario)].append(int(lo - 1e-12 <= truth <= hi + 1e-12))
        self.widths[(method, scenario)].append(hi - lo)

    def coverage(self, key: tuple[str, str]) -> float | None:
        h = self.hits.get(key)
        return sum(h) / len(h) if h else None


def simulate_card(rng: np.random.Generator, size: int, sens: float, spec: float) -> tuple[int, int, int, int]:
    pos = size // 2
    tp = _binomial(rng, pos, sens)
    tn = _binomial(rng, size - pos, spec)
    return tp, pos - tp, size - pos - tn, tn


def calibrated_and_raw(t: Tally, rng: np.random.Generator, reps: int, grid: dict[str, tuple]) -> None:
    for p in grid["prev"]:
        for jname, (sens, spec) in grid["judges"].items():
            apparent = sens * p + (1 - spec) * (1 - p)
            for n in grid["runs"]:
                raw_scn = f"p={p:.2f} judge={jname} n={n}"
                for _ in range(reps):
                    k = _binomial(rng, n, apparent)
                    lo, hi = intervals.clopper_pearson(k, n)
                    t.add("raw", raw_scn, lo, hi, apparent)
                    wlo, whi = wilson_interval(k, n)
                    t.add("raw Wilson (before)", raw_scn, wlo, whi, apparent)
                for m in grid["cards"]:
                    scn = f"p={p:.2f} judge={jname} n={n} card={m}"
                    for _ in range(reps):
                        k = _binomial(rng, n, apparent)
                        tp, fn, fp, tn = simulate_card(rng, m, sens, spec)
                        if _verdict(tp, fn, fp, tn) != intervals.CAN_CORRECT:
                            t.add("calibrated", scn, None, None, p)
                            continue
                        lo, hi = _corrected(k, n, tp, fn, fp, tn)
                        t.add("calibrated", scn, lo, hi, p)


def human_checked(t: Tally, rng: np.random.Generator, reps: int, grid: dict[str, tuple]) -> None:
    for p in grid["prev"]:
        for jname, (sens, spec) in grid["judges"].items():
            for n in grid["runs"]:
                for labels in grid["labels"]:
                    if labels > n:
                        continue
                    scn = f"p={p:.2f} judge={jname} n={n} labels={labels}"
                    for _ in range(reps):
                        y = (rng.random(n) < p).astype(float)
                        yhat = (rng.random(n) < np.where(y == 1, sens, 1 - spec)).astype(float)
                        # the run's outputs are in random order: people label the first `labels` of them
                        iv = intervals.checked_rate(y[:labels].tolist(), yhat[:labels].tolist(),
                                                    yhat[labels:].tolist())
                        t.add("human-checked", scn, iv.ci_low, iv.ci_high, p)
                        k = int(y[:labels].sum())
                        lo, hi = intervals.clopper_pearson(k, labels)
                        t.add("labels-only", scn, lo, hi, p)


def report(t: Tally, show: Callable[[str], None]) -> float:
    methods = ["raw", "calibrated", "human-checked", "labels-only", "raw Wilson (before)"]
    show("| method | scenario | coverage | median width | shown |")
    show("|---|---|---:|---:|---:|")
    worst: dict[str, tuple[float, str]] = {}
    for method in methods:
        for key in sorted(k for k in t.offered if k[0] == method):
            cov = t.coverage(key)
            off = t.offered[key]
            width = statistics.median(t.widths[key]) if t.widths.get(key) else None
            show(f"| {method} | {key[1]} | {'-' if cov is None else f'{cov:.3f}'} | "
                 f"{'-' if width is None else f'{width:.3f}'} | {sum(off) / len(off):.0%} |")
            if cov is not None and len(t.hits[key]) >= 20 and (method not in worst or cov < worst[method][0]):
                worst[method] = (cov, key[1])
    show("")
    show("| method | worst coverage | its scenario |")
    show("|---|---:|---|")
    for method in methods:
        if method in worst:
            show(f"| {method} | {worst[method][0]:.3f} | {worst[method][1]} |")
    show("")
    show("| method | true prevalence | worst coverage | median of median widths | scenarios |")
    show("|---|---:|---:|---:|---:|")
    for method in methods:
        for prev in sorted({k[1].split()[0] for k in t.offered if k[0] == method}):
            keys = [k for k in t.offered if k[0] == method and k[1].split()[0] == prev and len(t.hits[k]) >= 20]
            if not keys:
                continue
            covs = [t.coverage(k) or 0.0 for k in keys]
            widths = [statistics.median(t.widths[k]) for k in keys]
            show(f"| {method} | {prev.removeprefix('p=')} | {min(covs):.3f} | {statistics.median(widths):.3f} | "
                 f"{len(keys)} |")
    show("")
    minimum = min(cov for m, (cov, _) in worst.items() if m != "raw Wilson (before)")
    show(f"minimum coverage {minimum:.3f}")
    return minimum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="simulated runs per scenario (default 1000, --quick 200)")
    ap.add_argument("--quick", action="store_true", help="a reduced grid, about a minute")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    grid: dict[str, tuple] = {"prev": PREVALENCES, "judges": tuple(JUDGES.items()), "cards": CARD_SIZES,
                              "runs": RUN_SIZES, "labels": LABEL_COUNTS}
    if args.quick:
        grid = {"prev": (0.0, 0.05, 0.20), "judges": (("0.13/1.0", JUDGES["0.13/1.0"]),
                                                      ("0.9/0.95", JUDGES["0.9/0.95"])),
                "cards": (60, 300), "runs": (10, 50, 300), "labels": (3, 30)}
    grid["judges"] = dict(grid["judges"])  # type: ignore[assignment]
    reps = args.reps or (200 if args.quick else 1000)
    rng = np.random.default_rng(args.seed)
    t = Tally()
    calibrated_and_raw(t, rng, reps, grid)
    human_checked(t, rng, reps, grid)
    print(f"{reps} simulated runs per scenario; nominal level 0.95; a method is counted where the tool shows it")
    report(t, print)


if __name__ == "__main__":
    main()
