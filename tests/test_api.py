"""The Python API: `harness.run`, `harness.judge`, `harness.report`, `harness.leaderboard` return dataclasses,
on a real run of the embedded model, and agree with the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.errors import UsageError


def test_run_returns_generations_and_leaderboard_rows(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "api.sqlite"
    r = harness.run(model="smollm2-135m-instruct:Q4_1", limit=3, max_tokens=16, store=path, judge=False, report=False)
    assert isinstance(r, harness.RunResult) and r.status == "finished"
    assert r.planned == 3 and r.written == 3 and r.skipped == 0 and len(r.sample_keys) == 3
    assert [g.sample_key for g in r.generations] == r.sample_keys
    assert all(isinstance(g, harness.Generation) and g.ok and g.decode_tps and g.decode_tps > 0 for g in r.generations)
    assert all(g.n_output_tokens and g.n_output_tokens <= 16 for g in r.generations)
    (row,) = harness.leaderboard(path)
    assert isinstance(row, harness.LeaderboardRow) and row.variant == "Q4_1" and row.cost.n == 3
    assert row.harm_rater is None and row.harm_rate is None  # not judged
    # the CLI prints the same figures
    out = json.loads(cli("leaderboard", "--store", path, "--json").out)
    assert out[0]["decode_tps"] == pytest.approx(row.cost.decode_tps) and out[0]["n"] == 3
    # resuming writes nothing
    again = harness.run(model="smollm2-135m-instruct:Q4_1", limit=3, max_tokens=16, store=path, judge=False,
                        report=False)
    assert again.written == 0 and again.skipped == 3 and again.generations == r.generations
    # judging through the API
    j = harness.judge(path, "refusal-detector")
    assert isinstance(j, harness.JudgeResult) and j.n_ratings == 3 and j.rates and j.rates[0].task == "refusal"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"temperature": float("nan")}, "--temperature"),
    ({"top_p": 5.0}, "--top-p"),
    ({"seed": -1}, "seed -1"),
    ({"seed": 2**40}, "seed"),
    ({"max_tokens": 0}, "--max-tokens"),
    ({"limit": 0}, "--limit"),
    ({"model": "no-such-model"}, "unknown model"),
    ({"model": "smollm2-135m-instruct:Q9_9"}, "unknown variant"),
    ({"prompts": "no-such-set"}, "unknown prompt"),
    ({"device": "no-such-device"}, "unknown device"),
])
def test_bad_run_input_raises_before_the_store_is_opened(tmp_path: Path, kwargs: dict, fragment: str) -> None:
    path = tmp_path / "never.sqlite"
    with pytest.raises(UsageError, match=fragment.replace("-", r"\-") if fragment.startswith("--") else fragment):
        harness.run(**{"store": path, "judge": False, "report": False, **kwargs})
    assert not path.exists()  # validated before the store was created
