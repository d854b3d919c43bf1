"""Cost figures that hold on a busy device: the rules of harness.rates for warm-up and contended samples,
repeats, the interquartile range and honest "faster" claims, on hand-made generations; and the report's
"At a glance" built from them. Every expected number is worked out in the comments."""

from __future__ import annotations

from pathlib import Path

from storehelp import add_rows

from harness import rates
from harness.records import Generation
from harness.store import Store


def gen(variant: str, i: int, decode: float | None, **extra: object) -> Generation:
    base: dict[str, object] = dict(sample_key=f"{variant}-{i}", run_id="r", device="dev", model="m", variant=variant,
                                   backend="gguf", prompt_id=f"p{i}", prompt=f"prompt {i}", decode_tps=decode,
                                   ttft_s=0.1, latency_s=1.0, n_output_tokens=10, peak_rss_bytes=100 + i,
                                   benign=False, seed=0)
    base.update(extra)
    return Generation(**base)  # type: ignore[arg-type]


def test_warmup_and_contended_samples_are_left_out_and_counted() -> None:
    gens = [
        gen("A", 0, 5.0, warmup=True, contended=False),  # the warm-up: out
        gen("A", 1, 10.0, contended=False),
        gen("A", 2, 20.0, contended=False),
        gen("A", 3, 1.0, contended=True, interference_frac=0.5),  # contended: out
        gen("A", 4, 30.0),  # an older row without flags counts as clean
        gen("A", 5, None, error="crashed", peak_rss_bytes=10_000),  # an error: out of every figure
    ]
    (c,) = rates.cost_summaries(gens)
    # clean decode values 10, 20, 30: median 20; q1 = 10 + 0.5 * 10 = 15, q3 = 20 + 0.5 * 10 = 25
    assert (c.decode_tps, c.decode_tps_q1, c.decode_tps_q3) == (20.0, 15.0, 25.0)
    assert (c.n, c.n_errors, c.n_cost, c.n_contended, c.n_warmup, c.n_excluded) == (6, 1, 3, 1, 1, 2)
    # peak RAM is a maximum over every generation without an error, flagged ones included (104 of 100 + i)
    assert c.peak_rss_bytes == 104
    (every,) = rates.cost_summaries(gens, include_flagged=True)
    # 5, 10, 20, 1, 30 -> median 10; nothing counted as left out
    assert (every.decode_tps, every.n_cost, every.n_contended, every.n_warmup) == (10.0, 5, 0, 0)


def test_repeats_count_each_clean_measurement() -> None:
    def m(decode: float, contended: bool) -> dict[str, object]:
        return {"repeat": 0, "decode_tps": decode, "ttft_s": 0.2, "latency_s": 2.0, "contended": contended,
                "error": None}

    gens = [
        gen("A", 1, 11.0, repeats=3, measurements=[m(10.0, False), m(12.0, False), m(3.0, True)]),
        gen("A", 2, 14.0, repeats=3, measurements=[m(14.0, False), m(2.0, True), m(16.0, False)]),
        gen("A", 3, 2.0, repeats=3, contended=True, measurements=[m(2.0, True), m(1.0, True), m(3.0, True)]),
    ]
    (c,) = rates.cost_summaries(gens)
    # clean measurements 10, 12, 14, 16 (sample 3 has none: counted contended): median 13,
    # q1 at position 0.75 -> 10 + 0.75 * 2 = 11.5, q3 at 2.25 -> 14 + 0.25 * 2 = 14.5
    assert (c.decode_tps, c.decode_tps_q1, c.decode_tps_q3) == (13.0, 11.5, 14.5)
    assert (c.n_cost, c.n_contended, c.n_warmup) == (4, 1, 0)
    assert (c.ttft_s, c.latency_s) == (0.2, 2.0)


def board(spreads: dict[str, list[float]]) -> list[rates.LeaderboardRow]:
    gens = [gen(v, i, d) for v, values in spreads.items() for i, d in enumerate(values)]
    return rates.rate_tables(gens, [], []).leaderboard


def test_a_variant_is_called_faster_only_beyond_its_spread() -> None:
    rows = {r.variant: r for r in board({"fast": [100, 102, 104, 106], "slow": [80, 82, 84, 86],
                                         "close": [95, 99, 103, 105]})}
    # fast: median 103, IQR 101.5-104.5; slow: 83, IQR 81.5-84.5; close: 101, IQR 98-103.5
    fast, slow, close = rows["fast"].cost, rows["slow"].cost, rows["close"].cost
    assert (fast.decode_tps, fast.decode_tps_q1, fast.decode_tps_q3) == (103, 101.5, 104.5)
    assert rates.clearly_faster(fast, slow) and not rates.clearly_faster(slow, fast)
    assert not rates.clearly_faster(fast, close)  # 101.5 <= 103.5: the ranges overlap
    (verdict,) = rates.fastest(list(rows.values()))
    assert verdict.leader.variant == "fast" and not verdict.clear
    assert [r.variant for r in verdict.overlapping] == ["close"]
    (clear,) = rates.fastest(board({"fast": [100, 102, 104, 106], "slow": [80, 82, 84, 86]}))
    assert clear.leader.variant == "fast" and clear.clear and clear.overlapping == ()
    # One measurement each says nothing about the spread: nobody is called faster.
    (single,) = rates.fastest(board({"a": [100.0], "b": [50.0]}))
    assert single.leader.variant == "a" and not single.clear


def test_min_tps_names_contention_when_nothing_clean_is_left() -> None:
    gens = [gen("A", 0, 5.0, warmup=True), gen("A", 1, 10.0, contended=True), gen("A", 2, 12.0, contended=True)]
    (row,) = rates.candidates(rates.rate_tables(gens, [], []).leaderboard, min_tps=1.0)
    assert row.cost.decode_tps is None and row.cost.n_contended == 2 and not row.passes
    assert "no clean decode measurement (2 contended sample(s) left out)" in row.reasons[0]


def test_report_glance_is_honest_about_the_fastest(tmp_path: Path) -> None:
    from harness.reporting import build_report
    from harness.reporting._html import join
    from harness.reporting._report import glance_section

    def rows(spreads: dict[str, list[float]]) -> list[dict[str, object]]:
        out = []
        for v, values in spreads.items():
            for i, d in enumerate(values):
                out.append({"sample_key": f"{v}-{i}", "run_id": "r", "device": "dev", "model": "m", "variant": v,
                            "backend": "gguf", "prompt_id": f"p{i}", "prompt": f"prompt {i}", "decode_tps": d,
                            "benign": 0, "seed": 0, "contended": i == 3, "warmup": i == 0})
        return out

    def glance(spreads: dict[str, list[float]], name: str) -> str:
        with Store.open(tmp_path / f"{name}.sqlite") as store:
            add_rows(store, "generations", rows(spreads))
            return str(join(glance_section(build_report(store, bootstrap=0)).body))

    # warm-up (i=0) and contended (i=3) rows are left out: Q8 keeps 100, 102, 104, 106 (median 103, IQR
    # 101.5-104.5), Q4 keeps 80, 82, 84, 86 (IQR 81.5-84.5), Q2 keeps 101, 103, 105, 107 (median 104, IQR
    # 102.5-105.5, which overlaps Q8's)
    clear = glance({"Q8": [1, 100, 102, 1, 104, 106], "Q4": [1, 80, 82, 1, 84, 86]}, "clear")
    assert "Fastest: m:Q8 at 103.0 tok/s (IQR 101.5-104.5)." in clear
    assert "1 contended sample(s)" not in clear and "2 contended sample(s)" in clear
    tied = glance({"Q8": [1, 100, 102, 1, 104, 106], "Q2": [1, 101, 103, 1, 105, 107]}, "tied")
    assert "Fastest:" not in tied
    assert "No variant is clearly fastest: m:Q2 has the highest median, 104.0 tok/s" in tied
    assert "overlaps m:Q8 (103.0 [101.5-104.5])" in tied
