"""`harness run --batch N|auto` (harness.engine): harm samples generated in batches on the embedded SmolLM2-135M Q4_1,
their cost measured single-stream on a stratified cost sample. Greedy outputs agree with a single-stream run of the
same plan (the same keys), cost figures come only from single-stream samples, a batched run killed with SIGKILL
resumes with each sample stored once, and bad input is one line with nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import api, engine
from harness.errors import UsageError
from harness.progress import NoProgress
from harness.rates import cost_summaries
from harness.records import Generation
from harness.store import Store
from harness.variants import VariantFile

pytest.importorskip("llama_cpp")

MODEL = "smollm2-135m-instruct:Q4_1"
LIMIT = 6
MAX_TOKENS = 8
REPO = Path(__file__).resolve().parents[1]

# One thread and a small context: quick on a busy machine; the whole machine may be used by others (threshold 1),
# so that single-stream samples keep their cost figures.
DEVICE_TOML = """description = "test CPU"
kind = "cpu"
threads = 1
n_gpu_layers = 0
n_batch = 512
n_ctx = 512
memory_budget = "{budget}"
contention_threshold = 1.0
"""


def device_file(folder: Path, budget: str = "4GB") -> Path:
    path = folder / f"testcpu-{budget}.toml"
    path.write_text(DEVICE_TOML.format(budget=budget))
    return path


def generations(store: Path) -> list[Generation]:
    with Store.open(store) as st:
        return st.generations()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Generation], list[Generation], list[str]]:
    """The same plan single-stream and in batches of 3 (a cost sample of 2): both stores' rows, and the plan's keys."""
    d = tmp_path_factory.mktemp("batched-run")
    device = str(device_file(d))
    common = {"device": device, "limit": LIMIT, "max_tokens": MAX_TOKENS, "judge": False, "report": False}
    single = api.run(MODEL, store=d / "single.sqlite", **common)  # type: ignore[arg-type]
    batched = api.run(MODEL, store=d / "batched.sqlite", batch=3, cost_sample=2, **common)  # type: ignore[arg-type]
    assert single.sample_keys == batched.sample_keys  # the key does not depend on the batch size
    return generations(d / "single.sqlite"), generations(d / "batched.sqlite"), single.sample_keys


def test_batched_greedy_outputs_are_single_streams(runs: tuple[list[Generation], list[Generation], list[str]]) -> None:
    single, batched, keys = runs
    assert len(single) == len(batched) == LIMIT
    one = {g.sample_key: g for g in single}
    many = {g.sample_key: g for g in batched}
    assert set(one) == set(many) == set(keys)
    for key in keys:
        assert many[key].output == one[key].output, key
        assert many[key].n_output_tokens == one[key].n_output_tokens
        assert many[key].finish_reason == one[key].finish_reason
    assert {g.made_by for g in single} == {"single"} and {g.batch_size for g in single} == {1}
    made = sorted(g.made_by or "" for g in batched)
    assert made == ["batched"] * (LIMIT - 2) + ["single"] * 2  # the cost sample of 2, the rest batched
    assert {g.batch_size for g in batched if g.made_by == "batched"} == {3}


def test_batched_samples_carry_the_batchs_throughput_and_no_cost(
        runs: tuple[list[Generation], list[Generation], list[str]]) -> None:
    _, batched, _ = runs
    for g in batched:
        if g.made_by == "batched":
            assert g.batch_generated_tps is not None and g.batch_generated_tps > 0
            assert g.backend_timings and g.backend_timings["batch_generated_tps"] == g.batch_generated_tps
            assert (g.decode_tps, g.ttft_s, g.latency_s, g.prompt_tps, g.peak_rss_bytes, g.energy_j) == (None,) * 6
            assert not g.warmup and g.error is None
        else:
            assert g.batch_generated_tps is None and g.decode_tps is not None and g.latency_s is not None


def test_cost_figures_come_only_from_single_stream_samples(
        runs: tuple[list[Generation], list[Generation], list[str]]) -> None:
    _, batched, _ = runs
    (summary,) = cost_summaries(batched)
    singles = [g for g in batched if g.made_by == "single"]
    clean = [g for g in singles if not g.warmup]
    assert summary.n == LIMIT  # every generation counts as generated
    assert summary.n_warmup == 1 and summary.n_contended == 0
    assert summary.n_cost == len(clean) == 1  # the cost is from the one clean single-stream sample, nothing else
    assert summary.decode_tps == clean[0].decode_tps and summary.latency_s == clean[0].latency_s
    # counting every flagged measurement still leaves the batched samples out
    (flagged,) = cost_summaries(batched, include_flagged=True)
    assert flagged.n_cost == len(singles) == 2


def test_the_cost_sample_is_stratified_seeded_and_the_same_for_any_batch(
        runs: tuple[list[Generation], list[Generation], list[str]], tmp_path: Path) -> None:
    _, batched, _ = runs
    chosen = {g.sample_key for g in batched if g.made_by == "single"}
    by_key = {g.sample_key: g for g in batched}
    assert len({"benign control" if by_key[k].benign else by_key[k].category for k in chosen}) == 2  # 2 strata
    from harness.devices import load_profile

    spec = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS, batch=3, cost_sample=2)
    plan = engine.Plan(device=load_profile(str(device_file(tmp_path))), spec=spec)
    engine.prepare(plan)
    samples = list(engine.samples(plan))
    assert engine.cost_sample_keys(spec, samples) == chosen  # seeded: the run's choice again
    other = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS, batch=5, cost_sample=2)
    assert engine.cost_sample_keys(other, samples) == chosen  # whatever the batch size
    three = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS, batch=5, cost_sample=3)
    assert len(engine.cost_sample_keys(three, samples)) == 3


def test_a_batched_run_killed_midway_resumes_with_each_sample_once(tmp_path: Path) -> None:
    store = tmp_path / "kill.sqlite"
    limit = 40
    args = [sys.executable, "-m", "harness", "run", "--model", MODEL, "--device", str(device_file(tmp_path)),
            "--limit", str(limit), "--max-tokens", "6", "--batch", "4", "--cost-sample", "2", "--no-judge",
            "--no-report", "--quiet", "--store", str(store)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored_at_kill = 0
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if store.exists():
                try:
                    stored_at_kill = len(generations(store))
                except Exception:  # the store is being created
                    stored_at_kill = 0
                if stored_at_kill >= 2:  # the cost sample measured: the batched part has begun
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = generations(store)
    assert 1 <= len(before) < limit  # killed midway
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    after = generations(store)
    keys = [g.sample_key for g in after]
    assert len(keys) == len(set(keys)) == limit  # each sample stored once
    assert {g.sample_key: g.output for g in before}.items() <= {g.sample_key: g.output for g in after}.items()
    assert sum(g.made_by == "single" for g in after) == 2
    assert sum(g.made_by == "batched" for g in after) == limit - 2


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "message"), [
    (["--batch", "0"], "--batch 0: give a batch size of at least 1"),
    (["--batch", "many"], "--batch 'many': give a batch size"),
    (["--batch", "2", "--cost-sample", "7"], "--cost-sample 7 is larger than the plan, which has 6 samples per "
                                             "variant: give at most 6"),
    (["--cost-sample", "2"], "--cost-sample is for batched runs: add --batch N|auto"),
    (["--batch", "2", "--cost-sample", "0"], "--cost-sample 0: give the number of samples"),
    (["--batch", "513"], "more than the n_batch = 512"),
])
def test_bad_batch_input_is_one_line_and_writes_nothing(cli, tmp_path: Path, extra: list[str],  # type: ignore[no-untyped-def]
                                                        message: str) -> None:
    store = tmp_path / "bad.sqlite"
    r = cli("run", "--model", MODEL, "--device", device_file(tmp_path), "--limit", LIMIT, "--max-tokens", MAX_TOKENS,
            "--no-judge", "--no-report", "--quiet", "--store", store, *extra)
    assert r.code == 2
    assert message in r.err and len(r.err.strip().splitlines()) == 1
    assert not store.exists()


def test_a_batch_over_the_memory_budget_says_what_fits(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2's KV cache is 23,040 bytes a token: 11.8 MB a sequence at n_ctx 512, beside its ~0.1 GB of weights."""
    store = tmp_path / "bad.sqlite"
    r = cli("run", "--model", MODEL, "--device", device_file(tmp_path, "150MB"), "--limit", LIMIT, "--no-judge",
            "--no-report", "--quiet", "--store", store, "--batch", "64")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "at most 4 sequences fit at this n_ctx: use a batch of 4 or less" in r.err
    assert not store.exists()


def test_auto_picks_what_the_memory_budget_holds(tmp_path: Path) -> None:
    from harness.backends.llama_batch import batch_limits
    from harness.devices import load_profile

    spec = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS, batch="auto")
    small = load_profile(str(device_file(tmp_path, "150MB")))
    plan = engine.Plan(device=small, spec=spec)
    engine.prepare(plan)
    (_, vf), = plan.variants
    _, fits = batch_limits(vf, small)
    assert fits is not None and 2 <= fits < engine.AUTO_BATCH_MAX
    assert plan.batch_sizes == {MODEL: fits}
    roomy = engine.Plan(device=load_profile(str(device_file(tmp_path))), spec=spec)
    engine.prepare(roomy)
    assert roomy.batch_sizes == {MODEL: engine.AUTO_BATCH_MAX}


class _Notes(NoProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def test_a_backend_that_cannot_batch_falls_back_or_is_refused_when_forced(tmp_path: Path) -> None:
    from harness.devices import load_profile

    vf = VariantFile(model="m", variant="v", backend="remote", path=tmp_path / "x", sha256="0" * 64, size_bytes=1)
    device = load_profile("laptop-cpu")
    notes = _Notes()
    assert engine._batch_size(vf, device, "auto", notes) == 1
    assert len(notes.lines) == 1 and "cannot generate in batches: it runs single-stream" in notes.lines[0]
    with pytest.raises(UsageError, match="the remote backend cannot generate in batches: drop --batch"):
        engine._batch_size(vf, device, 4, notes)


def test_int8_onnx_runs_single_stream_under_auto(tmp_path: Path) -> None:
    from harness.devices import load_profile

    device = load_profile("laptop-cpu")
    int8 = VariantFile(model="m", variant="onnx-int8", backend="onnx", path=tmp_path, sha256="0" * 64, size_bytes=1)
    fp32 = VariantFile(model="m", variant="onnx-fp32", backend="onnx", path=tmp_path, sha256="0" * 64, size_bytes=1)
    notes = _Notes()
    assert engine._batch_size(int8, device, "auto", notes) == 1
    assert "int8 outputs differ" in notes.lines[-1]
    assert engine._batch_size(int8, device, 4, notes) == 4  # forced: batched, with a note
    assert engine._batch_size(fp32, device, "auto", notes) == engine.ONNX_AUTO_BATCH


def test_the_batch_settings_travel_to_fleet_boards() -> None:
    import json

    spec = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS, batch="auto", cost_sample=3)
    back = engine.RunSpec.from_wire(json.loads(json.dumps(spec.to_wire())))
    assert (back.batch, back.cost_sample) == ("auto", 3) and back == spec
    plain = api.run_spec(MODEL, limit=LIMIT, max_tokens=MAX_TOKENS)
    older = {k: v for k, v in plain.to_wire().items() if k not in ("batch", "cost_sample")}  # an older coordinator
    assert engine.RunSpec.from_wire(older).batch is None
