"""Pure statistics of the report, against values worked out by hand."""

from __future__ import annotations

import pytest

from harness import formatting as f
from harness.reporting._judges import explanation_for
from harness.reporting._markdown import cell
from harness.reporting._study import histogram_shares, wins_matrix
from harness.stats import mcnemar_exact_p, pareto_front, rogan_gladen, wilson_interval


def test_wilson_one_of_three() -> None:
    # p = 1/3, z^2 = 3.8415: centre = (1/3 + z^2/6) / (1 + z^2/3) = 0.42692,
    # half = z * sqrt(p(1-p)/3 + z^2/36) / (1 + z^2/3) = 0.36543
    lo, hi = wilson_interval(1, 3)
    assert lo == pytest.approx(0.0615, abs=1e-4)
    assert hi == pytest.approx(0.7923, abs=1e-4)


def test_wilson_zero_of_ten_and_empty() -> None:
    # p = 0: centre = half = (z^2/20) / (1 + z^2/10) = 0.13877, so the interval is [0, 0.27754]
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_rogan_gladen() -> None:
    # (0.3 + 0.9 - 1) / (0.8 + 0.9 - 1) = 0.2 / 0.7
    r = rogan_gladen(0.3, sensitivity=0.8, specificity=0.9)
    assert r.rate == pytest.approx(0.2 / 0.7)
    assert not r.clipped and r.note is None
    # (0.05 - 0.1) / 0.7 < 0 -> clipped to 0
    r = rogan_gladen(0.05, 0.8, 0.9)
    assert r.rate == 0.0 and r.clipped and "clipped" in (r.note or "")
    # (0.95 + 0.9 - 1) / 0.7 = 1.214 -> clipped to 1
    assert rogan_gladen(0.95, 0.8, 0.9).rate == 1.0
    # a judge no better than chance: no correction, and a note saying why
    r = rogan_gladen(0.3, 0.5, 0.5)
    assert r.rate is None and "<= 0" in (r.note or "")


def test_mcnemar_exact() -> None:
    # 0 vs 5 discordant pairs: two-sided binomial p = 2 * 0.5^5
    assert mcnemar_exact_p(0, 5) == pytest.approx(0.0625)
    # 1 vs 9: 2 * (1 + 10) / 1024
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == pytest.approx(1.0)


def test_pareto_front_harm_vs_speed() -> None:
    points = [(0.1, 10.0), (0.2, 20.0), (0.15, 5.0), (0.2, 15.0), (None, 30.0), (0.1, 10.0)]
    # (0.15, 5) is dominated by (0.1, 10); (0.2, 15) by (0.2, 20); a missing harm is never on the front;
    # identical points do not dominate each other
    assert pareto_front(points, maximise_second=True) == [True, True, False, False, False, True]


def test_pareto_front_harm_vs_ram() -> None:
    points = [(0.1, 300.0), (0.2, 100.0), (0.3, 100.0), (0.05, 500.0)]
    assert pareto_front(points, maximise_second=False) == [True, True, False, True]


def test_study_shapes() -> None:
    ranking = {
        "models": [{"label": "a"}, {"label": "b"}, {"label": "c"}],
        "rank_histogram": {"n_items": 4, "models": [
            {"label": "a", "shares": {"1": 0.5, "2": 0.25, "3": 0.25}},
            {"label": "b", "shares": {"2": 0.5, "1": 0.5, "3": None}},
        ]},
        "pairwise": [{"a": "a", "b": "b", "a_win_rate": 0.6, "b_win_rate": 0.3},
                     {"a": "b", "b": "c", "a_win_rate": 0.1, "b_win_rate": 0.9}],
    }
    assert histogram_shares(ranking) == {"a": [0.5, 0.25, 0.25], "b": [0.5, 0.5, 0.0]}
    labels, m = wins_matrix(ranking)
    assert labels == ["a", "b", "c"]
    assert m == [[None, 0.6, None], [0.3, None, 0.1], [None, 0.9, None]]


def test_explanation_sources() -> None:
    assert explanation_for({"explanation": "because"}, {"reason": "other"}, "raw") == "because"
    assert explanation_for(None, {"reason": "parsed reason"}, "raw") == "parsed reason"
    assert explanation_for(None, None, "x" * 700, limit=10) == "x" * 10 + " ..."
    assert explanation_for(None, None, None) is None


def test_formatting() -> None:
    assert f.rate_ci(1 / 3, 0.0615, 0.7923) == "33% [6-79%]"
    assert f.rate_ci(None, None, None) == "-"
    assert f.mb(293_000_000) == "293 MB"
    assert f.mb(4_200_000_000) == "4.20 GB"
    assert f.pvalue(0.0004) == "<0.001"
    assert f.missing(float("nan")) and f.missing(None) and not f.missing(0.0)
    # a Markdown cell cannot break the table or carry markup
    assert cell("a|b\n<script>") == "a\\|b &lt;script&gt;"


def test_parquet_ready_columns() -> None:
    import pandas as pd

    from harness.reporting._report import parquet_ready

    assert parquet_ready(pd.Series(["a", 1, None])).tolist() == ["a", "1", None]
    assert parquet_ready(pd.Series([[1, 2], None])).tolist() == ["[1, 2]", None]
    mixed_numbers = pd.Series([1, 2.5, None], dtype=object)
    assert parquet_ready(mixed_numbers).tolist() == [1, 2.5, None]
