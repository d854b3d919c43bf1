from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.variants import load_manifest, parse_spec, resolve_variant, source_path, variant_notes
from harness.variants.gguf import check_gguf, read_info


def test_embedded_model_is_found_and_read() -> None:
    m = load_manifest("smollm2-135m-instruct")
    vf = resolve_variant(m, "Q4_1")
    assert vf.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and vf.derived_from is None
    assert len(vf.sha256) == 64
    info = read_info(vf.path)
    assert info["architecture"] == "llama" and info["file_type"] == "Q4_1"
    assert info["tensor_types"]["Q4_1"] > 100 and info["chat_template"].count("im_start") >= 2


def test_gemma_base_model_has_no_chat_template() -> None:
    m = load_manifest("gemma3-270m")
    assert m.chat_format == "completion"
    info = read_info(source_path(m))
    assert info["architecture"] == "gemma3"


def test_quantize_derives_caches_and_records_mix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    m = load_manifest("smollm2-135m-instruct")
    messages: list[str] = []
    vf = resolve_variant(m, "Q4_K_M", messages.append)
    assert messages and "deriving" in messages[0]
    assert vf.path.is_file() and str(vf.path).startswith(str(tmp_path))
    types = vf.metadata["gguf"]["tensor_types"]
    # K-quants fall back for rows that are not multiples of 256: the mix is recorded.
    assert "Q4_K" in types and ("Q5_0" in types or "Q4_0" in types)
    again: list[str] = []
    vf2 = resolve_variant(m, "Q4_K_M", again.append)
    assert again == [] and vf2.sha256 == vf.sha256
    assert "larger, not more accurate" in variant_notes(m, "F16")
    assert "larger" not in variant_notes(m, "Q4_0")


def test_spec_parsing_and_unknown_names() -> None:
    m, variants = parse_spec("smollm2-135m-instruct:Q8_0,Q4_K_M")
    assert variants == ["Q8_0", "Q4_K_M"]
    _, default = parse_spec("smollm2-135m-instruct")
    assert len(default) >= 2
    with pytest.raises(UsageError, match="unknown variant 'Q9_9'"):
        parse_spec("smollm2-135m-instruct:Q9_9")
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        parse_spec("nope")


def test_not_gguf_and_truncated_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(UsageError, match="not a GGUF file"):
        check_gguf(bad)
    real = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1").path
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(real.read_bytes()[: 20_000_000])
    with pytest.raises(UsageError, match="truncated|not a readable GGUF"):
        check_gguf(cut)


def test_manifest_pointing_at_local_file(tmp_path: Path) -> None:
    real = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1").path
    man = tmp_path / "mine.toml"
    man.write_text(f'description = "local copy"\n[source]\npath = "{real}"\nvariant = "Q4_1"\n')
    m = load_manifest(str(man))
    assert resolve_variant(m, "Q4_1").path == real
    man.write_text('[source]\npath = "missing.gguf"\nvariant = "Q4_1"\n')
    with pytest.raises(UsageError, match="does not exist"):
        resolve_variant(load_manifest(str(man)), "Q4_1")


def test_models_cli(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "list")
    assert r.code == 0 and "smollm2-135m-instruct" in r.out and "gemma3-270m" in r.out
    r = cli("models", "show", "smollm2-135m-instruct", "--json")
    assert r.code == 0 and '"file_type": "Q4_1"' in r.out
    r = cli("models", "quantize", "smollm2-135m-instruct", "--to", "Q4_0")
    assert r.code == 0 and "Q4_0" in r.out
    r = cli("models", "quantize", "smollm2-135m-instruct", "--to", "Q7")
    assert r.code == 2 and "unknown variant 'Q7'" in r.err
