"""The run engine end to end: real llama.cpp inference on the embedded model, the store, resume, bad input."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SMALL_RUN_PROMPTS, run_harness

EXPORT_COLUMNS = ["sample_key", "run_id", "device", "model", "variant", "backend", "prompt_id", "category", "benign",
                  "prompt", "output", "n_prompt_tokens", "n_output_tokens", "ttft_s", "prompt_tps", "decode_tps",
                  "latency_s", "peak_rss_bytes", "peak_vram_bytes", "energy_j", "error"]


def rows(store: Path) -> list[dict]:
    con = sqlite3.connect(store)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM generations")]
    finally:
        con.close()


def test_small_run_records_cost_per_sample(small_run_store: Path) -> None:
    gens = rows(small_run_store)
    assert len(gens) == 2 * len(SMALL_RUN_PROMPTS)
    assert {g["variant"] for g in gens} == {"Q4_1", "Q8_0"}
    for g in gens:
        assert g["error"] is None and g["output"].strip()
        assert g["backend"] == "gguf" and g["backend_version"].startswith("llama-cpp-python")
        assert 0 < g["n_output_tokens"] <= 24 and g["n_prompt_tokens"] > 10
        assert 0 < g["ttft_s"] < g["latency_s"]
        assert g["decode_tps"] > 1 and g["prompt_tps"] > 1
        assert g["peak_rss_bytes"] > 50_000_000
        # No GPU, NVML or power meter here: null, never 0.
        assert g["peak_vram_bytes"] is None and g["energy_j"] is None
        timings = json.loads(g["backend_timings"])
        # llama.cpp's own counters sit beside the wall clock: prompt fully evaluated (empty KV cache).
        assert timings["llama_n_p_eval"] == g["n_prompt_tokens"]
        assert timings["llama_n_eval"] == timings["n_streamed_tokens"] - 1
        assert timings["llama_decode_tps"] > 0
        # The wall-clock rate includes sampling, so it cannot beat llama.cpp's eval-only rate by much.
        assert g["decode_tps"] < timings["llama_decode_tps"] * 1.10
    con = sqlite3.connect(small_run_store)
    loads = con.execute("SELECT variant, load_s, rss_after_load_bytes, metadata FROM model_loads").fetchall()
    runs = con.execute("SELECT status, planned, metadata FROM runs").fetchall()
    con.close()
    assert {lv[0] for lv in loads} == {"Q4_1", "Q8_0"} and all(lv[1] > 0 and lv[2] > 0 for lv in loads)
    assert runs[0][0] == "finished" and runs[0][1] == 10
    meta = json.loads(runs[0][2])
    assert meta["versions"]["gguf"].startswith("llama-cpp-python") and meta["host"]["physical_cores"] >= 1


def test_greedy_is_deterministic_and_rerun_skips(small_store: Path) -> None:
    before = {g["sample_key"]: g["output"] for g in rows(small_store)}
    prompts = small_store.parent / "p.jsonl"
    from harness.prompts import load_set, write_jsonl

    by_id = {p.id: p for p in load_set("default")}
    write_jsonl([by_id[i] for i in [*SMALL_RUN_PROMPTS, "neg-001"]], prompts)
    r = run_harness("run", "--model", "smollm2-135m-instruct:Q4_1,Q8_0", "--prompts", prompts, "--max-tokens", "24",
                    "--no-judge", "--no-report", "--quiet", "--store", small_store)
    assert r.returncode == 0, r.stderr
    assert "2 new, 10 already in the store" in r.stderr
    after = {g["sample_key"]: g["output"] for g in rows(small_store)}
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())


def test_sigkill_then_rerun_finishes_exactly_the_plan(tmp_path: Path) -> None:
    store = tmp_path / "kill.sqlite"
    args = [sys.executable, "-m", "harness", "run", "--model", "smollm2-135m-instruct:Q4_1,Q8_0", "--limit", "6",
            "--max-tokens", "32", "--no-judge", "--no-report", "--quiet", "--store", str(store)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    n = 0
    while time.time() < deadline:
        time.sleep(0.2)
        if store.exists():
            try:
                n = len(rows(store))
            except sqlite3.OperationalError:
                continue
            if n >= 3:
                break
        if proc.poll() is not None:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(rows(store))
    assert 3 <= partial < 12, f"the run should have been killed midway, had {partial} rows"
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    final = rows(store)
    assert len(final) == 12
    pairs = [(g["variant"], g["prompt_id"]) for g in final]
    assert len(set(pairs)) == 12
    assert f"{12 - partial} new, {partial} already in the store" in r.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_formats(small_run_store: Path, tmp_path: Path, fmt: str, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / f"g.{fmt}"
    r = cli("export", "--store", small_run_store, "--table", "generations", "--format", fmt, "--out", out)
    assert r.code == 0, r.err
    if fmt == "jsonl":
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        cols = list(recs[0])
    elif fmt == "csv":
        import csv

        with open(out, newline="") as fh:
            recs = list(csv.DictReader(fh))
        cols = list(recs[0])
    else:
        import pandas as pd

        frame = pd.read_parquet(out)
        recs, cols = frame.to_dict("records"), list(frame.columns)
        assert frame["energy_j"].isna().all()
    assert len(recs) == 10
    assert set(EXPORT_COLUMNS) <= set(cols)


def test_bad_inputs_exit_2_and_leave_the_store_intact(small_store: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    before = rows(small_store)
    bad_prompts = tmp_path / "bad.jsonl"
    bad_prompts.write_bytes(b'{"id": "x", "text": "caf\xe9"}\n')
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"not a model at all" * 100)
    fake_manifest = tmp_path / "fake.toml"
    fake_manifest.write_text(f'[source]\npath = "{not_gguf}"\nvariant = "Q4_1"\n')
    tiny_device = tmp_path / "tiny.toml"
    tiny_device.write_text('description = "a very small box"\nmemory_budget = "50MB"\n')
    cases = [
        (["--device", "no-such-device"], "unknown device"),
        (["--model", "no-such-model"], "unknown model"),
        (["--model", "smollm2-135m-instruct:Q9_9"], "unknown variant"),
        (["--prompts", "no-such-set"], "unknown prompt"),
        (["--prompts", str(bad_prompts)], "not UTF-8"),
        (["--model", str(fake_manifest)], "not a GGUF file"),
        (["--device", str(tiny_device)], "over the 0.05 GB memory budget"),
        (["--limit", "0"], "--limit must be at least 1"),
    ]
    for extra, message in cases:
        r = cli("run", "--store", small_store, "--no-judge", "--no-report", "--quiet", *extra)
        assert r.code == 2, (extra, r.err)
        assert message in r.err, (extra, r.err)
        errors = [line for line in r.err.splitlines() if line.startswith("harness: error:")]
        assert len(errors) == 1 and errors[0] == r.err.strip().splitlines()[-1], r.err
    assert rows(small_store) == before
    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("my notes\n" * 10)
    r = cli("run", "--store", not_db, "--limit", "1", "--no-judge", "--no-report", "--quiet")
    assert r.code == 2 and "not a harness store" in r.err and not_db.read_text() == "my notes\n" * 10
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("run", "--store", blocker / "sub" / "s.sqlite", "--limit", "1", "--no-judge", "--no-report", "--quiet")
    assert r.code == 2 and "writable --store" in r.err


def test_gemma_base_model_runs_as_completion(tmp_path: Path) -> None:
    store = tmp_path / "g.sqlite"
    r = run_harness("run", "--model", "gemma3-270m", "--limit", "1", "--max-tokens", "12", "--no-judge", "--no-report",
                    "--quiet", "--store", store)
    assert r.returncode == 0, r.stderr
    (g,) = rows(store)
    assert g["variant"] == "Q4_K_M" and g["n_output_tokens"] > 0 and json.loads(g["settings"])["n_ctx"] > 0


def test_seeds_are_samples_and_reproduce(tmp_path: Path) -> None:
    store = tmp_path / "seeds.sqlite"
    args = ("run", "--model", "smollm2-135m-instruct:Q4_1", "--limit", "1", "--max-tokens", "16", "--temperature", "1.0",
            "--seeds", "1,2", "--no-judge", "--no-report", "--quiet", "--store", store)
    assert run_harness(*args).returncode == 0
    first = {g["seed"]: g["output"] for g in rows(store)}
    assert set(first) == {1, 2}
    # Same seed, same settings, a fresh store: the same text (sampling is seeded, not just greedy).
    store2 = tmp_path / "seeds2.sqlite"
    assert run_harness(*args[:-1], store2).returncode == 0
    assert {g["seed"]: g["output"] for g in rows(store2)} == first


def test_user_catalog_prompt_set_by_name(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "mine.jsonl").write_text(
        json.dumps({"id": "m1", "text": "Say hello.", "category": "greeting", "benign": True, "source": "me"}) + "\n")
    r = cli("--catalog", tmp_path, "prompts", "show", "mine", "--json")
    assert r.code == 0 and '"m1"' in r.out
    r = cli("--catalog", tmp_path / "missing", "prompts", "list")
    assert r.code == 2 and "does not exist" in r.err
