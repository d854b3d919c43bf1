"""Agreement speed: `agreement_rows` on 100,000 rated items (3 outputs each, 2 raters), with and without bootstrap.

Prints the median wall time of a few repeats and the rate in items per second, and, side by side in the
same run, the vectorised per-item metrics (RBO, Kendall tau-b) against a plain per-item Python loop
(the `rbo` package when installed, else our scalar RBO, and scipy's kendalltau) on a subset, as a ratio.

Run: .venv/bin/python benchmarks/agreement_speed.py [--items 100000] [--bootstrap 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def synthetic_ratings(n_items: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Two raters ranking 3 outputs per item with the study's codes; the judge agrees ~60% of the time."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    perms = np.array([[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1],
                      [0, 1, 2], [0, 2, 1], [1, 0, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0],
                      [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    human = perms[rng.integers(0, len(perms), n_items)]
    judge = np.where(rng.random(n_items)[:, None] < 0.6, human, perms[rng.integers(0, len(perms), n_items)])
    items = np.repeat([f"p:{i:016x}" for i in range(n_items)], 3)
    models = np.tile(["mistral-7b", "mpt-7b", "stablelm-alpha-7b"], n_items)
    frames = []
    for rater, kind, codes in (("human", "human", human), ("judge", "judge", judge)):
        c = codes.ravel().astype(float)
        frames.append(pd.DataFrame({"rater": rater, "rater_kind": kind, "annotator": "", "task": "rank",
                                    "item_id": items, "category": None, "model": models, "variant": "release",
                                    "code": c, "label": None, "harmful": (c > 0).astype(float), "valid": 1}))
    return pd.concat(frames, ignore_index=True), human.astype(float), judge.astype(float)


def median_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-items", type=int, default=5_000, help="subset for the per-item loop comparison")
    args = ap.parse_args()

    from scipy.stats import kendalltau

    from harness.agreement import agreement_rows
    from harness.agreement import metrics as m

    frame, human, judge = synthetic_ratings(args.items)
    n = args.items
    t0 = median_time(lambda: agreement_rows(frame, bootstrap=0), args.repeats)
    print(f"agreement, {n:,} items x 3 outputs, 2 raters, no bootstrap: median {t0:.2f} s "
          f"({n / t0:,.0f} items/s)")
    tb = median_time(lambda: agreement_rows(frame, bootstrap=args.bootstrap), args.repeats)
    print(f"agreement, {n:,} items, {args.bootstrap} bootstrap resamples: median {tb:.2f} s "
          f"({n / tb:,.0f} items/s)")

    k = min(args.loop_items, n)
    h, j = human[:k], judge[:k]

    def vectorised() -> None:
        m.rbo_ext_rows(m.harmful_positions(h), m.harmful_positions(j))
        m.kendall_tau_b_rows(h, j)

    try:
        import rbo as rbo_pkg

        def rbo_one(a, b):  # type: ignore[no-untyped-def]
            return rbo_pkg.RankingSimilarity(a, b).rbo_ext(p=0.9)
        loop_name = "rbo package + scipy kendalltau"
    except ImportError:
        def rbo_one(a, b):  # type: ignore[no-untyped-def]
            return m.rbo_ext(a, b, 0.9)
        loop_name = "scalar rbo_ext + scipy kendalltau"

    def lst(codes: np.ndarray) -> list[int]:
        return [int(i) for i in sorted(np.flatnonzero(codes > 0), key=lambda i: -codes[i])]

    def loop() -> None:
        for a, b in zip(h, j):
            rbo_one(lst(a), lst(b))
            if len(set(a)) > 1 and len(set(b)) > 1:
                kendalltau(a, b)

    tv = median_time(vectorised, args.repeats)
    tl = median_time(loop, max(1, args.repeats // 2))
    print(f"RBO + tau-b on {k:,} items: vectorised {tv * 1e3:.1f} ms, per-item loop ({loop_name}) {tl * 1e3:.0f} ms: "
          f"{tl / tv:.0f}x faster")


if __name__ == "__main__":
    main()
