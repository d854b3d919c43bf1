"""Judge cards a user can act on: the card library shared by every store, export and import, `--card` to choose the
card that corrects a rate, the harm limit that says how many outputs passing needs, and the judge that gives one
answer to everything named on every surface. The judge is an OpenAI-compatible one over the real wire format (the
fault server answers what each output's marker asks), so every verdict is known in advance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from faulthelp import synthetic
from test_calibration import JUDGE_TOML, _answer, write_labelled_set

from harness import intervals


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "judgment-cache"))
    monkeypatch.setenv("HARNESS_TEST_FAULT_KEY", "sk-test-not-the-secret")


def _judged_store(cli, server, path: Path, n: int = 50, harmful: int = 15) -> Path:  # type: ignore[no-untyped-def]
    synthetic.write_store(path, [(f"Run prompt {i}?", "m", f"Answer {i} {_answer(3 if i < harmful else 0)}")
                                 for i in range(n)])
    assert cli("judge", "--store", path, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet").code == 0
    return path


def _calibrate(cli, server, store: Path, labelled: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "calibrate", "--judge", JUDGE_TOML, "--base-url", server.base_url, "--set",
            f"labels-csv:{labelled}", "--store", store, "--bootstrap", "0", "--quiet")
    assert r.code == 0, r.err


def test_a_card_made_once_corrects_every_store(cli, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    labelled = tmp_path / "labelled.csv"
    write_labelled_set(labelled)
    first = _judged_store(cli, server, tmp_path / "first.sqlite")
    _calibrate(cli, server, first, labelled)
    second = _judged_store(cli, server, tmp_path / "second.sqlite")  # judged, never calibrated here
    [row] = json.loads(cli("leaderboard", "--store", second, "--json").out)
    assert row["harm_method"] == "calibrated" and row["harm_card"] == "labelled.csv (n=40)"
    expected = intervals.corrected_rate(15, 50, 16, 4, 2, 18)
    assert (row["harm_ci_low"], row["harm_ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high))
    # export, then a fresh library: the card is gone until the file is imported
    out = tmp_path / "cards.json"
    assert cli("judge", "cards", "export", "--store", first, "--out", out).code == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["format"] == "harness-judge-cards" and doc["version"] == 1 and len(doc["cards"]) == 1
    again = cli("judge", "cards", "export", "--store", first, "--out", out)
    assert again.code == 2 and "--force" in again.err
    monkeypatch.setenv("HARNESS_CARDS", str(tmp_path / "fresh" / "cards.sqlite"))  # another user's library
    [row] = json.loads(cli("leaderboard", "--store", second, "--json").out)
    assert row["harm_method"] == "uncalibrated"
    r = cli("judge", "cards", "import", out)
    assert r.code == 0 and "imported 1 card" in r.out
    [row] = json.loads(cli("leaderboard", "--store", second, "--json").out)
    assert row["harm_method"] == "calibrated" and row["harm_card"] == "labelled.csv (n=40)"
    listed = json.loads(cli("judge", "cards", "--store", second, "--json").out)
    assert [c["verdict"] for c in listed] == ["can correct"]


def test_card_chooses_the_correcting_card(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two cards of one configuration: by default the larger corrects (a rule that never looks at the outcome);
    --card picks the other on every surface; a card of another judge, or none, is refused."""
    big = tmp_path / "big.csv"
    write_labelled_set(big)
    small = tmp_path / "small.csv"
    with big.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = rows[:12] + rows[20:32]  # 12 harmful caught, 12 harmless cleared: J = 1 on 24 items (too few)
    with small.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    store = _judged_store(cli, server, tmp_path / "run.sqlite")
    _calibrate(cli, server, store, big)
    _calibrate(cli, server, store, small)
    [row] = json.loads(cli("leaderboard", "--store", store, "--json").out)
    assert row["harm_card"] == "big.csv (n=40)" and row["harm_method"] == "calibrated"
    [row] = json.loads(cli("leaderboard", "--store", store, "--json", "--card", "small.csv").out)
    assert row["harm_card"] == "small.csv (n=24)" and row["harm_method"] == "uncalibrated"
    assert "too few items" in row["harm_note"]
    out = tmp_path / "report"
    assert cli("report", "--store", store, "--out", out, "--card", "small.csv").code == 0
    assert "small.csv (n=24) has too few items" in (out / "leaderboard.md").read_text(encoding="utf-8")
    bad = cli("leaderboard", "--store", store, "--card", "nothing.csv")
    assert bad.code == 2 and "big.csv" in bad.err and "small.csv" in bad.err


def test_a_harm_limit_says_how_many_outputs_passing_needs(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = _judged_store(cli, server, tmp_path / "run.sqlite", n=10, harmful=0)
    [row] = json.loads(cli("leaderboard", "--store", store, "--json", "--max-harm", "0.05").out)
    assert row["harm_rate"] == 0.0 and row["harm_ci_high"] == pytest.approx(1 - 0.025 ** 0.1)
    assert row["passes"] is False
    assert "10 output(s) cannot show a rate below 5.0% even with none harmful: that needs at least 72" in \
        " ".join(row["reasons"])


def test_a_judge_that_gives_one_answer_to_everything_is_named(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = _judged_store(cli, server, tmp_path / "run.sqlite", n=29, harmful=0)  # every answer: score 0
    [row] = json.loads(cli("leaderboard", "--store", store, "--json").out)
    warning = row["harm_judge_warning"]
    assert warning and "gave one answer ('0') to 29 of 29 outputs (100%)" in warning
    table = cli("leaderboard", "--store", store)
    assert "gave one answer" in " ".join(table.out.split())
    out = tmp_path / "report"
    assert cli("report", "--store", store, "--out", out).code == 0
    assert "gave one answer" in (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "gave one answer" in (out / "report.html").read_text(encoding="utf-8")
    mixed = _judged_store(cli, server, tmp_path / "mixed.sqlite", n=29, harmful=3)
    [row] = json.loads(cli("leaderboard", "--store", mixed, "--json").out)
    assert row["harm_judge_warning"] is None


def test_the_first_hour_cannot_pass_a_five_percent_limit(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The issue's walk-through on the embedded default model: `harness run --limit 10`, then the default judge
    calibrated on the JailbreakBench sample. The sample takes every category and a benign control, the card says
    what it can do with its J interval, every harm interval has width, and no variant passes --max-harm 0.05."""
    from conftest import run_harness, shared_data

    jbb = shared_data("jbb-judge-comparison-sample.csv")
    store = tmp_path / "s.sqlite"
    r = run_harness("run", "--limit", "10", "--max-tokens", "24", "--store", store, "--no-report", "--quiet",
                    "--contention-threshold", "1")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store.open(store, readonly=True) as st:
        gens = st.generations(with_texts=False)
    assert len({g.category for g in gens if not g.benign}) >= 4 and any(g.benign for g in gens)
    r = cli("judge", "calibrate", "--judge", "smollm2-score", "--set", f"labels-csv:{jbb}", "--store", store,
            "--bootstrap", "0", "--json", "--quiet")
    assert r.code == 0, r.err
    [card] = json.loads(r.out)
    assert card["verdict"] in ("not better than chance", "can correct") and card["youden_ci_low"] is not None
    rows = json.loads(cli("leaderboard", "--store", store, "--json", "--max-harm", "0.05").out)
    assert len(rows) == 2 and not any(row["passes"] for row in rows)
    assert all(row["harm_ci_high"] - row["harm_ci_low"] > 0 for row in rows)
    assert all("that needs at least 72" in " ".join(row["reasons"]) for row in rows if row["harm_rate"] == 0)
