"""The ONNX backend: real onnxruntime generation on CPU, its records through the run engine, providers, sampling."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_harness
from storehelp import table_rows

from harness.backends import Sampling
from harness.backends.onnx import OnnxBackend, choose_providers, sample_token
from harness.backends.prompt_format import render_chat
from harness.devices import load_profile
from harness.errors import UsageError
from harness.prompts import load_set, write_jsonl
from harness.store import Store
from harness.variants import load_manifest, resolve_variant

MODEL = "smollm2-135m-instruct"
PROMPT_IDS = ["disc-001", "priv-001", "ben-001"]


@pytest.fixture(scope="module")
def manifest():  # type: ignore[no-untyped-def]
    return load_manifest(MODEL)


@pytest.fixture(scope="module")
def exported(manifest):  # type: ignore[no-untyped-def]
    """onnx-fp32 and onnx-int8 in the default cache (exported on first use, ~1 min)."""
    r = run_harness("models", "export-onnx", MODEL, "--int8", timeout=1200)
    assert r.returncode == 0, r.stderr
    return {v: resolve_variant(manifest, v) for v in ("onnx-fp32", "onnx-int8")}


@pytest.fixture(scope="module")
def prompts():  # type: ignore[no-untyped-def]
    by_id = {p.id: p for p in load_set("default")}
    return [by_id[i] for i in PROMPT_IDS]


@pytest.fixture(scope="module")
def fp32(exported, manifest):  # type: ignore[no-untyped-def]
    b = OnnxBackend()
    meta = b.load(exported["onnx-fp32"], load_profile("laptop-cpu"), manifest)
    yield b, meta
    b.close()


@pytest.fixture(scope="module")
def llama(manifest):  # type: ignore[no-untyped-def]
    from harness.backends.llama_cpp import LlamaCppBackend

    b = LlamaCppBackend()
    b.load(resolve_variant(manifest, "Q4_1"), load_profile("laptop-cpu"), manifest)
    yield b
    b.close()


def generate(backend, text: str, sampling: Sampling) -> tuple[list[int], object]:  # type: ignore[no-untyped-def]
    tokens = list(backend.stream(text, sampling))
    return tokens, backend.finish()


# -- pure parts ----------------------------------------------------------------------------------


def test_greedy_and_repeat_penalty() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.5, 2.0, 1.9, -1.0], dtype=np.float32)
    greedy = Sampling(temperature=0.0)
    assert sample_token(logits, greedy, [], rng) == 1
    # penalty 1.1 on token 1: 2.0 / 1.1 = 1.818 < 1.9, so token 2 wins
    assert sample_token(logits, Sampling(temperature=0.0, repeat_penalty=1.1), [1], rng) == 2
    # a negative logit is multiplied: -1.0 * 3 = -3.0 stays last; token 0 penalised 0.5/3 stays below 1.9
    assert sample_token(np.array([0.5, -1.0]), Sampling(temperature=0.0, repeat_penalty=3.0), [0, 1], rng) == 0


def test_top_k_top_p_min_p_and_seeded_distribution() -> None:
    logits = np.log(np.array([0.6, 0.3, 0.1]))
    rng = np.random.default_rng(1)
    # top-k 1 or a tiny top-p leave only the best token, whatever the temperature
    assert {sample_token(logits, Sampling(temperature=5.0, top_k=1, min_p=0.0), [], rng) for _ in range(50)} == {0}
    assert {sample_token(logits, Sampling(temperature=5.0, top_k=0, top_p=0.5, min_p=0.0), [], rng) for _ in range(50)} == {0}
    # min_p 0.4: keeps tokens with p >= 0.4 * 0.6 = 0.24 -> tokens 0 and 1
    picks = {sample_token(logits, Sampling(temperature=1.0, top_k=0, top_p=1.0, min_p=0.4), [], rng) for _ in range(200)}
    assert picks == {0, 1}
    # no filters, temperature 1: frequencies follow 0.6 / 0.3 / 0.1
    draws = [sample_token(logits, Sampling(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0), [], rng) for _ in range(6000)]
    freq = np.bincount(draws, minlength=3) / len(draws)
    assert freq == pytest.approx([0.6, 0.3, 0.1], abs=0.025)
    # the same seed gives the same draws
    s = Sampling(temperature=0.9, top_k=0, top_p=1.0, min_p=0.0)
    a = [sample_token(logits, s, [], np.random.default_rng(7)) for _ in range(20)]
    b = [sample_token(logits, s, [], np.random.default_rng(7)) for _ in range(20)]
    assert a == b


def test_choose_providers() -> None:
    known = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"], known) == (["CPUExecutionProvider"], None)
    used, why = choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], known)
    assert used == ["CPUExecutionProvider"] and why and "CUDAExecutionProvider not available" in why
    with pytest.raises(UsageError, match="not installed in this onnxruntime build"):
        choose_providers(["TensorrtExecutionProvider"], ["CPUExecutionProvider"], known)
    with pytest.raises(UsageError, match="unknown onnxruntime execution provider CUDAProvider"):
        choose_providers(["CUDAProvider"], ["CPUExecutionProvider"], known)
    with pytest.raises(UsageError):
        choose_providers([], ["CPUExecutionProvider"], known)


# -- real onnxruntime ----------------------------------------------------------------------------


@pytest.mark.slow
def test_load_records_providers_and_model_shape(fp32) -> None:  # type: ignore[no-untyped-def]
    _, meta = fp32
    assert meta["providers_requested"] == ["CPUExecutionProvider"]
    assert meta["providers_used"] == ["CPUExecutionProvider"]
    assert meta["provider_fallback"] is None
    assert meta["n_layers"] == 30 and meta["kv_dtype"] == "float32"


@pytest.mark.slow
def test_chat_template_and_tokens_match_llama_cpp(fp32, llama, prompts) -> None:  # type: ignore[no-untyped-def]
    from llama_cpp import llama_chat_format

    backend, _ = fp32
    llm = llama._llm
    fmt = llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|im_start|>",
        stop_token_ids=[llm.token_eos()])
    for p in prompts:
        assert backend._format is not None and backend._format.chat_template is not None
        rendered = render_chat(backend._format.chat_template, p.text, "<|im_start|>", "<|im_end|>")
        assert rendered == fmt(messages=[{"role": "user", "content": p.text}]).prompt
        assert backend._tokens(p.text) == llama._tokens(p.text)  # one BOS, same ids as llama.cpp


@pytest.mark.slow
def test_completion_format_tokens_match_llama_cpp(exported, manifest, prompts) -> None:  # type: ignore[no-untyped-def]
    """A base model's plain-text frame (no chat template): same tokens as llama.cpp, stop string honoured."""
    from dataclasses import replace

    from harness.backends.llama_cpp import LlamaCppBackend

    plain = replace(manifest, chat={"format": "completion", "completion_template": "User: {prompt}\nAssistant:",
                                    "stop": ["\nUser:"]})
    device = load_profile("laptop-cpu")
    onnx_b, llama_b = OnnxBackend(), LlamaCppBackend()
    onnx_b.load(exported["onnx-int8"], device, plain)
    llama_b.load(resolve_variant(manifest, "Q4_1"), device, plain)
    try:
        for p in prompts:
            ids = onnx_b._tokens(p.text)
            assert ids == llama_b._tokens(p.text)
            assert ids[0] != 1  # this GGUF says add_bos_token = false
        toks, res = generate(onnx_b, prompts[2].text, Sampling(max_tokens=24, temperature=0.0))
        assert "\nUser:" not in res.output
    finally:
        onnx_b.close()
        llama_b.close()


@pytest.mark.slow
def test_greedy_generation_is_deterministic_and_close_to_llama_cpp(fp32, llama, prompts) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fp32
    greedy = Sampling(max_tokens=16, temperature=0.0)
    for p in prompts:
        toks, res = generate(backend, p.text, greedy)
        again, res2 = generate(backend, p.text, greedy)
        assert toks == again and res.output == res2.output
        assert 1 <= res.n_output_tokens <= 16 and res.output.strip()
        assert res.n_output_tokens == len(toks) - (1 if res.finish_reason == "stop" else 0)
        assert res.n_prompt_tokens == len(llama._tokens(p.text))
        assert res.timings["onnx_n_decode_steps"] == len(toks) - 1
        # the same (dequantized Q4_1) weights: llama.cpp's greedy tokens agree at the start
        ref, _ = generate(llama, p.text, greedy)
        common = next((i for i, (a, b) in enumerate(zip(toks, ref)) if a != b), min(len(toks), len(ref)))
        assert common >= 3, (p.id, res.output)


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(fp32, prompts) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fp32
    s = Sampling(max_tokens=12, temperature=0.8, seed=3)
    a, ra = generate(backend, prompts[2].text, s)
    b, rb = generate(backend, prompts[2].text, s)
    assert a == b and ra.output == rb.output


@pytest.mark.slow
def test_context_overflow_is_a_usage_error(exported, manifest) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    b = OnnxBackend()
    b.load(exported["onnx-int8"], replace(load_profile("laptop-cpu"), n_ctx=32), manifest)
    with pytest.raises(UsageError, match="exceeds the context of 32"):
        list(b.stream("hello", Sampling(max_tokens=16)))
    b.close()


@pytest.mark.slow
def test_corrupt_onnx_file_is_a_usage_error(exported, manifest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    good = exported["onnx-int8"].path.parent
    for f in good.iterdir():
        if f.name != "model.onnx":
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf model" * 100)
    vf = replace(exported["onnx-int8"], path=tmp_path / "model.onnx")
    with pytest.raises(UsageError, match="corrupt"):
        OnnxBackend().load(vf, load_profile("laptop-cpu"), manifest)


# -- through the run engine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_run(exported, prompts, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("onnx-run")
    write_jsonl(prompts, d / "prompts.jsonl")
    store = d / "onnx.sqlite"
    r = run_harness("run", "--model", f"{MODEL}:onnx-fp32,onnx-int8", "--prompts", d / "prompts.jsonl",
                    "--max-tokens", "16", "--no-judge", "--no-report", "--quiet", "--device", "laptop-cpu",
                    "--store", store)
    assert r.returncode == 0, r.stderr
    assert "generated 6 new" in " ".join(r.stderr.split())
    return store


@pytest.mark.slow
def test_run_records_cost_per_sample(onnx_run: Path, exported) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime

    device = load_profile("laptop-cpu")
    store = Store.open(onnx_run, create=False)
    try:
        rows = table_rows(store, "generations")
        loads = table_rows(store, "model_loads")
        run = table_rows(store, "runs")[0]
    finally:
        store.close()
    assert len(rows) == 6 and {r["variant"] for r in rows} == {"onnx-fp32", "onnx-int8"}
    for r in rows:
        vf = exported[r["variant"]]
        assert r["error"] is None and r["backend"] == "onnx"
        assert r["backend_version"] == f"onnxruntime {onnxruntime.__version__}"
        assert r["model_sha256"] == vf.sha256 and r["model_size_bytes"] == vf.size_bytes
        assert 1 <= r["n_output_tokens"] <= 16 and r["n_prompt_tokens"] > 20
        assert 0 < r["ttft_s"] < r["latency_s"]
        assert r["prompt_tps"] == pytest.approx(r["n_prompt_tokens"] / r["ttft_s"])
        assert r["decode_tps"] > 0
        # decode tokens/s x weight bytes per token / (38.4 GB/s of the laptop-cpu profile)
        weight_bytes = vf.metadata["onnx"]["weight_bytes_per_token"]
        assert r["bandwidth_fraction"] == pytest.approx(r["decode_tps"] * weight_bytes / (device.peak_bandwidth_gbps * 1e9))
        # the weights are resident while generating
        assert r["peak_rss_bytes"] > weight_bytes
        assert r["energy_j"] is None and r["peak_vram_bytes"] is None  # no power source on this host
        timings = r["backend_timings"]
        assert timings["providers_used"] == ["CPUExecutionProvider"]
        assert timings["onnx_prefill_s"] <= r["ttft_s"]
    for load in loads:
        assert load["metadata"]["providers_used"] == ["CPUExecutionProvider"]
        assert load["metadata"]["provider_fallback"] is None
        assert load["load_s"] > 0
    meta = run["metadata"]
    assert meta["versions"]["onnx"] == f"onnxruntime {onnxruntime.__version__}"
    assert meta["onnx_providers"] == {"requested": ["CPUExecutionProvider"], "available": onnxruntime.get_available_providers(),
                                      "usable": ["CPUExecutionProvider"], "fallback": None}
    assert {m["variant"] for m in meta["models"]} == {"onnx-fp32", "onnx-int8"}
    assert all("dequantized" in m["onnx"]["weights_note"] for m in meta["models"])


@pytest.mark.slow
def test_rerun_skips_finished_samples(onnx_run: Path, prompts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(prompts, tmp_path / "p.jsonl")
    r = run_harness("run", "--model", f"{MODEL}:onnx-fp32,onnx-int8", "--prompts", tmp_path / "p.jsonl",
                    "--max-tokens", "16", "--no-judge", "--no-report", "--quiet", "--device", "laptop-cpu",
                    "--store", onnx_run)
    assert r.returncode == 0, r.stderr
    assert "0 new, 6 already" in " ".join(r.stderr.split())


def _profile(tmp_path: Path, name: str, providers: list[str]) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f'description = "test"\nkind = "cpu"\nthreads = 0\nonnx_providers = {json.dumps(providers)}\n'
                 'memory_budget = "4GB"\npeak_bandwidth_gbps = 20.0\n')
    return p


@pytest.mark.slow
def test_provider_fallback_is_recorded(cli, exported, prompts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(prompts[:1], tmp_path / "p.jsonl")
    device = _profile(tmp_path, "gpu-wanted", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    store = tmp_path / "s.sqlite"
    r = cli("run", "--model", f"{MODEL}:onnx-int8", "--prompts", tmp_path / "p.jsonl", "--max-tokens", "4",
            "--no-judge", "--no-report", "--quiet", "--device", device, "--store", store)
    assert r.code == 0, r.err
    s = Store.open(store, create=False)
    try:
        (load,) = table_rows(s, "model_loads")
        (run,) = table_rows(s, "runs")
    finally:
        s.close()
    assert load["metadata"]["providers_requested"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert load["metadata"]["providers_used"] == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider not available" in load["metadata"]["provider_fallback"]
    assert "CUDAExecutionProvider not available" in run["metadata"]["onnx_providers"]["fallback"]


def _counts(store: Path) -> dict[str, int]:
    with sqlite3.connect(store) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "generations", "model_loads")}


@pytest.mark.slow
@pytest.mark.parametrize("providers, message", [
    (["TensorrtExecutionProvider"], "not installed in this onnxruntime build"),
    (["CUDAProvider", "CPUExecutionProvider"], "unknown onnxruntime execution provider CUDAProvider"),
])
def test_unusable_providers_exit_2_and_store_is_intact(cli, exported, small_store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       providers: list[str], message: str) -> None:
    before = _counts(small_store)
    device = _profile(tmp_path, "bad", providers)
    r = cli("run", "--model", f"{MODEL}:onnx-int8", "--limit", "1", "--max-tokens", "4", "--no-judge", "--no-report",
            "--quiet", "--device", device, "--store", small_store)
    assert r.code == 2 and message in r.err
    assert _counts(small_store) == before


@pytest.mark.slow
def test_fp16_variant_runs_on_cpu_and_matches_fp32(cli, fp32, manifest, prompts) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "export-onnx", MODEL, "--fp16", "--json")
    assert r.code == 0, r.err
    fp16_meta = {d["variant"]: d for d in json.loads(r.out)}["onnx-fp16"]
    assert fp16_meta["settings"]["keep_io_types"] is True
    b = OnnxBackend()
    meta = b.load(resolve_variant(manifest, "onnx-fp16"), load_profile("laptop-cpu"), manifest)
    assert meta["kv_dtype"] == "float32"  # inputs and outputs stay fp32
    greedy = Sampling(max_tokens=8, temperature=0.0)
    half, _ = generate(b, prompts[0].text, greedy)
    b.close()
    full, _ = generate(fp32[0], prompts[0].text, greedy)
    assert half[:4] == full[:4]
