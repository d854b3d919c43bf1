"""The one terminal leaderboard of `harness run` and `harness leaderboard` (harness.cli.tables): compact by default,
it fits 100 columns with no cell cut short; --wide adds every figure; a variant measured only under contention
shows its contended speed marked, with what else used the machine.

The store is written by hand: a long model name with three variants, judged by a judge (uncalibrated harm) and a
refusal detector; one variant's every sample was contended (others took 45% of the machine).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from storehelp import add_rows

from harness import rates
from harness.cli.tables import leaderboard_table, print_width
from harness.records import Generation, Run
from harness.store import Store

MODEL = "qwen2.5-1.5b-instruct"
VARIANTS = {"Q4_K_M": 123.4, "onnx-int8": 87.25, "Q8_0": 64.0}  # decode tok/s
BUSY = "Q8_0"  # every sample contended
HARMFUL = [f"h{i}" for i in range(6)]
BENIGN = ["b0", "b1"]
ELLIPSES = ("…", "...")


def gen(variant: str, i: int, prompt_id: str, tps: float) -> Generation:
    prompt = f"Prompt {prompt_id}?"
    return Generation(
        sample_key=hashlib.sha256(f"{variant}|{prompt_id}".encode()).hexdigest()[:24], run_id="r1",
        device="laptop-cpu", model=MODEL, variant=variant, backend="gguf", prompt_id=prompt_id, category="test",
        benign=prompt_id in BENIGN, prompt=prompt, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        output="out", n_output_tokens=24, decode_tps=tps + i, ttft_s=0.1234, latency_s=0.61, peak_rss_bytes=1_234_567_890,
        model_size_bytes=1_100_000_000, warmup=i == 0, contended=variant == BUSY,
        interference_frac=0.45 if variant == BUSY else 0.01, cpu_steal_frac=0.0)


def build(path: Path) -> None:
    gens = [gen(v, i, p, tps) for v, tps in VARIANTS.items() for i, p in enumerate(HARMFUL + BENIGN)]
    ratings = []
    for g in gens:
        base = {"item_id": g.prompt_id, "prompt_id": g.prompt_id, "category": "test", "model": g.model,
                "variant": g.variant, "sample_key": g.sample_key, "valid": 1, "source": "test", "rater_kind": "judge"}
        if not g.benign:
            harmful = int(g.variant == "onnx-int8" and g.prompt_id in ("h0", "h1"))
            ratings.append({**base, "rating_key": f"s:{g.sample_key}", "rater": "smollm2-score", "task": "score",
                            "harmful": harmful, "code": 3.0 * harmful})
        ratings.append({**base, "rating_key": f"r:{g.sample_key}", "rater": "refusal-detector", "task": "refusal",
                        "label": "refusal" if g.prompt_id == "h2" else "compliance"})
    with Store.open(path) as st:
        st.add([Run(run_id="r1", started_at=0.0, status="finished", command="test")])
        st.add(gens)
        add_rows(st, "ratings", ratings)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "tables.sqlite"
    build(path)
    return path


def rows_of(store: Path) -> list[rates.LeaderboardRow]:
    import harness

    return harness.leaderboard(store)


def render(table: object, width: int) -> str:
    console = Console(record=True, width=width, markup=False, highlight=False)
    console.print(table)
    return console.export_text()


def assert_fits(text: str, width: int) -> None:
    assert not any(e in text for e in ELLIPSES), text
    assert max(len(line) for line in text.splitlines()) <= width, text


def test_contended_figures_are_kept_apart_from_the_clean_medians(store: Path) -> None:
    rows = {r.variant: r for r in rows_of(store)}
    busy = rows[BUSY]
    # the clean medians stay unknown (no limit, rank or front uses a contended figure) ...
    assert busy.cost.decode_tps is None and busy.cost.ttft_s is None and busy.cost.n_contended == 7
    assert not busy.front_tps
    # ... and the contended ones are there: 7 samples after the warm-up, decode 64+1 .. 64+7 -> median 68
    contended = busy.cost.contended
    assert contended is not None and (contended.n_cost, contended.decode_tps) == (7, 68.0)
    assert (contended.decode_tps_q1, contended.decode_tps_q3) == (66.5, 69.5)
    assert contended.ttft_s == pytest.approx(0.1234) and contended.interference_frac == pytest.approx(0.45)
    # the flat columns of --json and the report's tables name them contended_*
    flat = busy.as_dict()
    assert (flat["contended_n_cost"], flat["contended_decode_tps"], flat["decode_tps"]) == (7, 68.0, None)
    clean = rows["Q4_K_M"]
    assert clean.cost.decode_tps == 127.4 and clean.cost.contended is None
    assert (clean.as_dict()["contended_n_cost"], clean.as_dict()["contended_decode_tps"]) == (0, None)
    flagged = {r.variant: r for r in rates.rate_tables(load(store), [], [], include_flagged=True).leaderboard}
    assert flagged[BUSY].cost.decode_tps == 67.5 and flagged[BUSY].cost.contended is None  # warm-up counted too


def load(store: Path) -> list[Generation]:
    with Store.open(store, readonly=True) as st:
        return st.generations(with_texts=False)


@pytest.mark.parametrize("width", [100, 120])
@pytest.mark.parametrize("limits", [False, True])
def test_the_compact_table_fits_without_cutting_a_cell(store: Path, width: int, limits: bool) -> None:
    rows = rows_of(store)
    text = render(leaderboard_table(rows, limits=limits, width=width), width)
    assert_fits(text, width)
    header = next(line for line in text.splitlines() if "model:variant" in line)
    assert re.findall(r"harm \[95% CI\]|how|refusal|decode tok/s \[IQR\]|TTFT s|peak RAM", header) == [
        "harm [95% CI]", "how", "refusal", "decode tok/s [IQR]", "TTFT s", "peak RAM"]
    assert ("pass" in header) is limits
    line = next(ln for ln in text.splitlines() if "127.4 [125.9-128.9]" in ln)  # Q4_K_M: 124.4 .. 130.4
    assert "0% [0-46%]" in line and "uncalibrated" in line and "17%" in line and "1.23 GB" in line
    busy = next(ln for ln in text.splitlines() if "68.0 [66.5-69.5]*" in ln)
    assert "0.123*" in busy and "0% [0-46%]" in busy
    lines = [ln.strip() for ln in text.splitlines()]
    # names whole: on one line, or broken after the model (the name column is the one that gives way)
    assert all(any(ln.startswith((f"{MODEL}:{v} ", v)) for ln in lines) for v in VARIANTS), text
    flat = " ".join(text.split())
    assert "every sample contended (other processes took 45% of the machine); median of 7" in flat
    assert "leaderboard on laptop-cpu: harm on harmful prompts by smollm2-score" in flat


@pytest.mark.parametrize("width", [100, 120])
def test_the_wide_table_is_printed_at_its_own_width(store: Path, width: int) -> None:
    table = leaderboard_table(rows_of(store), wide=True, width=width)
    text = render(table, print_width(table, width))
    assert not any(e in text for e in ELLIPSES), text
    header = next(line for line in text.splitlines() if "model:variant" in line)
    for col in ("over-refusal", "n rated", "prompt tok/s", "J/token", "of BW bound", "cost excluded", "errors"):
        assert col in header
    assert "7 contended, 1 warm-up" in text and "--wide" not in text


@pytest.mark.parametrize("width", ["100", "120"])
def test_harness_leaderboard_at_the_terminal_width(store: Path, cli, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                  width: str) -> None:
    monkeypatch.setenv("COLUMNS", width)
    r = cli("leaderboard", "--store", store, "--max-harm", "0.9")
    assert r.code == 0, r.err
    assert_fits(r.out, int(width))
    assert "3 of 3 variant(s) meet the limits" in " ".join(r.out.split()) and "68.0 [66.5-69.5]*" in r.out
    r = cli("leaderboard", "--store", store, "--wide")
    assert r.code == 0 and "J/token" in r.out.replace("\n", "") and "…" not in r.out


def test_leaderboard_is_a_ci_gate(store: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Limits no variant meets exit 3 (documented in --help and the README); no limits, or one met, exit 0."""
    r = cli("leaderboard", "--store", store, "--max-harm", "0.05")  # 6 outputs cannot show a rate below 5%
    assert r.code == 3 and "0 of 3 variant(s) meet the limits" in " ".join(r.out.split())
    assert "no variant meets the limits (exit 3)" in r.err and "fails: harm upper 95% bound" in r.out
    r = cli("leaderboard", "--store", store, "--max-harm", "0.05", "--json")
    assert r.code == 3 and not any(row["passes"] for row in json.loads(r.out))
    assert cli("leaderboard", "--store", store).code == 0
    assert cli("leaderboard", "--store", store, "--min-tps", "100").code == 0  # Q4_K_M decodes 127 tok/s
    r = cli("leaderboard", "--help")
    assert r.code == 0 and "3 limits were given and no variant meets them" in " ".join(r.out.split())


@pytest.mark.parametrize("width", ["100", "120"])
def test_harness_run_prints_the_same_table(store: Path, cli, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                           width: str) -> None:
    """`harness run` ends with the table `harness leaderboard` prints (the run itself replaced by its result)."""
    from types import SimpleNamespace

    import harness.api

    rows = rows_of(store)
    seen: dict[str, object] = {}

    def fake_run(*args: object, **kwargs: object) -> SimpleNamespace:
        seen.update(kwargs)
        return SimpleNamespace(written=0, skipped=24, planned=24, fleet=None, judges=[], report=None,
                               leaderboard=rows, store=store)

    monkeypatch.setattr(harness.api, "run", fake_run)
    monkeypatch.setenv("COLUMNS", width)
    r = cli("run", "--store", store, "--no-judge")
    assert r.code == 0, r.err
    assert seen["include_flagged"] is False
    assert_fits(r.out, int(width))
    table = r.out.split("results:")[0]
    assert table.strip() == cli("leaderboard", "--store", store).out.strip()
    r = cli("run", "--store", store, "--no-judge", "--include-flagged")
    assert r.code == 0 and seen["include_flagged"] is True
    assert "every measurement, warm-up and contended ones included" in " ".join(r.out.split())


def test_report_include_flagged(store: Path, tmp_path: Path) -> None:
    """The report's tables hold the contended figures beside the clean ones; --include-flagged counts them all."""
    import pandas as pd

    import harness

    harness.report(store, tmp_path / "clean", bootstrap=0)
    harness.report(store, tmp_path / "all", bootstrap=0, include_flagged=True)
    clean = pd.read_csv(tmp_path / "clean" / "tables" / "leaderboard.csv").set_index("variant")
    flagged = pd.read_csv(tmp_path / "all" / "tables" / "leaderboard.csv").set_index("variant")
    assert pd.isna(clean.loc[BUSY, "decode_tps"]) and clean.loc[BUSY, "contended_decode_tps"] == 68.0
    assert clean.loc[BUSY, "contended_interference_frac"] == pytest.approx(0.45)
    assert flagged.loc[BUSY, "decode_tps"] == 67.5 and pd.isna(flagged.loc[BUSY, "contended_decode_tps"])
    md = " ".join((tmp_path / "clean" / "leaderboard.md").read_text(encoding="utf-8").split())
    # Markdown escapes the mark ("\\*" renders as "*", never as emphasis)
    assert "68.0 [66.5-69.5]\\*" in md and "every sample contended (other processes took 45% of the machine)" in md
