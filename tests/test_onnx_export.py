"""`harness models export-onnx`: the embedded model exported to ONNX with KV cache, int8, fp16; the cache; bad input.

The export (~1 min, 539 MB) goes into the default cache once and is reused by later runs and by
tests/test_onnx_backend.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import run_harness

from harness.errors import UsageError
from harness.variants import load_manifest
from harness.variants.onnx import INT8_SETTINGS, SIDECAR, _require_export_deps, variant_dir
from harness.variants.onnx import resolve as ensure_onnx_variant

MODEL = "smollm2-135m-instruct"
N_PARAMETERS = 134_515_008  # from the manifest / GGUF
EMBEDDING_BYTES = 49_152 * 576 * 4  # vocab x hidden, fp32


@pytest.fixture(scope="module")
def exported() -> dict[str, dict]:
    r = run_harness("models", "export-onnx", MODEL, "--int8", "--json", timeout=1200)
    assert r.returncode == 0, r.stderr
    return {d["variant"]: d for d in json.loads(r.stdout)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.mark.slow
def test_export_writes_model_tokenizer_template_and_sidecar(exported: dict[str, dict]) -> None:
    import onnx

    assert set(exported) == {"onnx-fp32", "onnx-int8"}
    for variant, d in exported.items():
        folder = Path(d["path"]).parent
        assert folder.name == variant
        for name in ("model.onnx", "tokenizer.json", "chat_template.jinja", "config.json", SIDECAR):
            assert (folder / name).is_file(), name
        meta = json.loads((folder / SIDECAR).read_text())
        assert meta["sha256"] == d["sha256"] == _sha256(folder / "model.onnx")  # hashed afresh, not memoised
        assert meta["size_bytes"] == (folder / "model.onnx").stat().st_size
        assert meta["source"]["variant"] == "Q4_1"
        assert "dequantized" in meta["weights_note"] and "Q4_1" in meta["weights_note"]
        assert meta["tokenizer"]["eos_token_ids"] == [2] and meta["tokenizer"]["add_bos_token"] is False
        assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()
        graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
        inputs = {i.name for i in graph.input}
        outputs = [o.name for o in graph.output]
        assert {"input_ids", "attention_mask", "position_ids"} <= inputs
        assert {f"past_key_values.{i}.{kv}" for i in range(30) for kv in ("key", "value")} <= inputs  # 30 layers
        assert outputs[0] == "logits" and "present.29.value" in outputs


@pytest.mark.slow
def test_int8_settings_and_graph(exported: dict[str, dict]) -> None:
    import onnx

    d = exported["onnx-int8"]
    assert d["settings"] == {**INT8_SETTINGS, "folded_transposes": 1}
    graph = onnx.load(d["path"], load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    # 30 layers x 7 projections (q, k, v, o, gate, up, down) + the tied lm_head = 211 int8 MatMuls.
    assert ops.count("MatMulNBits") == 30 * 7 + 1
    assert any(n.name.startswith("/lm_head/") and n.op_type == "MatMulNBits" for n in graph.node)
    assert d["size_bytes"] < exported["onnx-fp32"]["size_bytes"] / 1.9


@pytest.mark.slow
def test_weight_bytes_per_token(exported: dict[str, dict]) -> None:
    # fp32: every parameter once (the tied embedding is read in full as the lm_head).
    assert exported["onnx-fp32"]["weight_bytes_per_token"] == N_PARAMETERS * 4
    # int8: the fp32 embedding table is only gathered from; the lm_head has its own int8 copy.
    import onnx

    graph = onnx.load(exported["onnx-int8"]["path"], load_external_data=False).graph
    total = sum(len(t.raw_data) for t in graph.initializer)
    assert exported["onnx-int8"]["weight_bytes_per_token"] == total - EMBEDDING_BYTES


@pytest.mark.slow
def test_cached_variant_is_reused_not_rewritten(exported: dict[str, dict]) -> None:
    folder = Path(exported["onnx-int8"]["path"]).parent
    before = (folder / "model.onnx").stat().st_mtime_ns, json.loads((folder / SIDECAR).read_text())["created_at"]
    messages: list[str] = []
    vf = ensure_onnx_variant(load_manifest(MODEL), "onnx-int8", messages.append)
    assert messages == []  # nothing exported
    assert vf.sha256 == exported["onnx-int8"]["sha256"]
    after = (folder / "model.onnx").stat().st_mtime_ns, json.loads((folder / SIDECAR).read_text())["created_at"]
    assert before == after
    assert not list(folder.parent.glob(".onnx-int8.tmp-*"))  # nothing left over from the atomic write


@pytest.mark.slow
def test_models_show_lists_onnx_variants(cli, exported: dict[str, dict]) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "show", MODEL, "--json")
    assert r.code == 0, r.err
    onnx_variants = {v["variant"]: v for v in json.loads(r.out)["onnx_variants"]}
    assert {"onnx-fp32", "onnx-int8"} <= set(onnx_variants)
    assert "dequantized" in onnx_variants["onnx-fp32"]["weights_note"]
    r = cli("models", "show", MODEL)
    assert "cached ONNX variants" in r.out


def _tiny_gguf(path: Path, arch: str) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(4)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch, why", [("rwkv6", "not supported by transformers' GGUF loader"),
                                       ("mamba", "optimum has no 'text-generation-with-past' export")])
def test_unsupported_architecture_exits_2(cli, tmp_path: Path, arch: str, why: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "models").mkdir()
    _tiny_gguf(tmp_path / f"{arch}.gguf", arch)
    (tmp_path / "models" / f"tiny-{arch}.toml").write_text(
        f'description = "tiny {arch}"\n[source]\npath = "{tmp_path / f"{arch}.gguf"}"\nvariant = "F32"\n'
        '[chat]\nformat = "completion"\n')
    r = cli("--catalog", tmp_path, "models", "export-onnx", f"tiny-{arch}")
    assert r.code == 2
    assert why in r.err and f"'{arch}'" in r.err and "GGUF variant" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_missing_export_dependencies_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UsageError, match=r"pip install 'harness\[export\]'"):
        _require_export_deps()


def _counts(store: Path) -> dict[str, int]:
    with sqlite3.connect(store) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "generations", "model_loads")}


@pytest.mark.slow
def test_corrupt_cached_onnx_file_exits_2_and_store_is_intact(cli, exported: dict[str, dict], small_store: Path,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = Path(exported["onnx-int8"]["path"]).parent
    m = load_manifest(MODEL)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    target = variant_dir(m, json.loads((good / SIDECAR).read_text())["source"]["sha256"], "onnx-int8")
    target.mkdir(parents=True)
    for f in good.iterdir():
        if f.name != "model.onnx":
            shutil.copy(f, target / f.name)
    size = (good / "model.onnx").stat().st_size
    with open(target / "model.onnx", "wb") as fh:  # same size, wrong bytes (sparse zeros)
        fh.truncate(size)
    before = _counts(small_store)
    args = ("run", "--model", f"{MODEL}:onnx-int8", "--limit", "1", "--max-tokens", "4", "--no-judge", "--no-report",
            "--quiet", "--store", small_store, "--device", "laptop-cpu")
    r = cli(*args)
    assert r.code == 2 and "sha256" in r.err and "--force" in r.err
    with open(target / "model.onnx", "r+b") as fh:  # truncated
        fh.truncate(size // 2)
    r = cli(*args)
    assert r.code == 2 and "wrong size" in r.err
    assert _counts(small_store) == before
