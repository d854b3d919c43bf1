"""The bandwidth probe, bytes read per token, and `harness devices probe`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.devices import load_profile
from harness.roofline import (
    bytes_per_token,
    cpu_flags_of_interest,
    fraction_of_bound,
    measure_bandwidth,
)
from harness.variants import load_manifest, resolve_variant
from harness.variants.gguf import bytes_per_token as gguf_bytes_per_token


def test_measure_bandwidth_counts_bytes_per_kernel() -> None:
    m = measure_bandwidth(threads=2, array_bytes=8 * 1024 * 1024, repeats=2)
    n = 8 * 1024 * 1024
    # read touches the array once, copy reads + writes (2x), the in-place triad moves 5 arrays' worth.
    assert m["bytes_moved"] == {"read": n * 2, "copy": 2 * n * 2, "triad": 5 * n * 2}
    assert set(m["gbps"]) == {"read", "copy", "triad"}
    assert all(0.1 < v < 2000 for v in m["gbps"].values())
    assert m["achievable_gbps"] == max(m["gbps"].values())
    with pytest.raises(ValueError):
        measure_bandwidth(threads=0)


def test_fraction_of_bound() -> None:
    # 50 tok/s x 100 MB/token = 5 GB/s of a 20 GB/s bound = 25 %.
    assert fraction_of_bound(50.0, 100_000_000, 20.0) == pytest.approx(0.25)
    assert fraction_of_bound(None, 100, 20.0) is None
    assert fraction_of_bound(50.0, 100, None) is None


def _write_gguf(path: Path, tied: bool) -> dict[str, int]:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    tensors = {"token_embd.weight": np.zeros((64, 16), np.float32), "blk.0.ffn_up.weight": np.zeros((16, 32), np.float32)}
    if not tied:
        tensors["output.weight"] = np.zeros((64, 16), np.float32)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {k: v.nbytes for k, v in tensors.items()}


def test_gguf_bytes_per_token_skips_a_lookup_only_embedding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    untied = _write_gguf(tmp_path / "untied.gguf", tied=False)
    tied = _write_gguf(tmp_path / "tied.gguf", tied=True)
    # untied: ffn 2048 B + output 4096 B (the 4096-B embedding is only looked up); tied: everything.
    assert gguf_bytes_per_token(tmp_path / "untied.gguf", "a" * 64) == untied["blk.0.ffn_up.weight"] + untied["output.weight"]
    assert gguf_bytes_per_token(tmp_path / "tied.gguf", "b" * 64) == sum(tied.values())
    # the one GGUF reader caches what it read by the file's sha256
    assert (tmp_path / "cache" / "gguf-info" / ("a" * 64 + ".json")).is_file()


def test_shipped_model_is_tied_so_every_tensor_is_read() -> None:
    from harness.variants.gguf import read_info

    vf = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1")
    assert bytes_per_token(vf) == read_info(vf.path)["tensor_bytes"]


def test_cpu_flags_of_interest() -> None:
    flags = ["fpu", "avx2", "avx512_vnni", "amx_int8", "fma", "smep", "sse4_2", "f16c"]
    assert cpu_flags_of_interest(flags) == ["amx_int8", "avx2", "avx512_vnni", "f16c", "fma"]
    assert cpu_flags_of_interest(["fp", "asimd", "asimddp", "i8mm", "bf16", "sve"]) == \
        ["asimd", "asimddp", "bf16", "i8mm", "sve"]


def test_probe_writes_a_loadable_profile_to_a_user_catalog(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("devices", "probe", "--size-mb", "8", "--repeats", "1", "--threads", "1", "--write", "thishost",
            "--catalog", tmp_path, "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    target = tmp_path / "devices" / "thishost.toml"
    assert out["profile"] == str(target) and target.is_file()
    assert out["cpu_flags"] and out["bandwidth"]["threads"] == 1
    profile = load_profile(str(target))
    assert profile.peak_bandwidth_gbps == pytest.approx(round(out["bandwidth"]["achievable_gbps"], 1))
    assert profile.kind == "cpu" and profile.onnx_providers == ("CPUExecutionProvider",)
    assert "CPU flags" in target.read_text()
    # The global --catalog also works, and the profile is then found by name.
    r = cli("--catalog", tmp_path, "devices", "probe", "--size-mb", "8", "--repeats", "1", "--write", "second")
    assert r.code == 0, r.err
    assert "achievable bandwidth" in r.out
    r = cli("--catalog", tmp_path, "devices", "show", "second", "--json")
    assert r.code == 0 and json.loads(r.out)["peak_bandwidth_gbps"] > 0


def test_probe_bad_targets_exit_2(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HARNESS_CATALOG", raising=False)
    r = cli("devices", "probe", "--write", "x")
    assert r.code == 2 and "--catalog DIR" in r.err
    shipped = Path(__file__).resolve().parents[1] / "devices" / "probe-test.toml"
    r = cli("devices", "probe", "--out", shipped)
    assert r.code == 2 and "shipped catalog" in r.err and not shipped.exists()
    r = cli("devices", "probe", "--out", tmp_path / "x.txt")
    assert r.code == 2 and ".toml" in r.err
    existing = tmp_path / "devices" / "taken.toml"
    existing.parent.mkdir()
    existing.write_text("# mine\n")
    r = cli("devices", "probe", "--write", "taken", "--catalog", tmp_path)
    assert r.code == 2 and "--force" in r.err and existing.read_text() == "# mine\n"
    r = cli("devices", "probe", "--repeats", "0")
    assert r.code == 2
