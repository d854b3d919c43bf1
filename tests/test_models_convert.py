"""`harness models convert`: tiny GPT-NeoX and MPT checkpoints made here, converted to GGUF by llama.cpp's own
converter, quantized, and run through the llama.cpp backend; and the input it refuses.

Nothing is downloaded but the converter itself (the installed llama-cpp-python version's sdist, once, into the
harness cache; set HARNESS_LLAMA_CONVERTER to a convert_hf_to_gguf.py to skip that). The tokenizer: llama.cpp's
converter recognises a BPE tokenizer's pre-tokenizer by the hash of how it splits a fixed text, and refuses one
it does not know ("BPE pre-tokenizer was not recognized"), so a tokenizer trained here on a few sentences cannot
be converted. The test builds SmolLM2's tokenizer instead, with `tokenizers`, from the vocabulary and merges in
the embedded model's GGUF (the converter knows it as "smollm").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CliResult
from hubserver import FakeHub, HubFile, HubRepo

from harness.errors import UsageError
from harness.variants import load_manifest, resolve_variant, source_kind
from harness.variants.gguf import read_info

COMMIT = "c" * 40
HIDDEN, LAYERS, HEADS = 64, 2, 4


@pytest.fixture(scope="module")
def converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py of the installed llama-cpp-python (fetched once into the user's cache)."""
    for module in ("llama_cpp", "torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from harness.variants.convert import locate_converter

    try:
        return locate_converter().script
    except UsageError as exc:  # no network and no cached converter
        pytest.skip(f"llama.cpp's converter is not available here: {exc}")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's BPE tokenizer, rebuilt from the embedded GGUF's vocabulary and merges, saved as a fast tokenizer."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from harness.variants import source_path

    reader = gguf.GGUFReader(str(source_path(load_manifest("smollm2-135m-instruct"))))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t, kind in zip(tokens, types) if kind == 3])
    out = tmp_path_factory.mktemp("tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                            unk_token="<|endoftext|>").save_pretrained(out)
    return out


def _checkpoint(kind: str, folder: Path, tokenizer_dir: Path) -> Path:
    """A randomly initialised model of `kind` (2 layers, hidden 64) saved with its tokenizer, as the original
    repositories lay it out (MPT's config names its class MPTForCausalLM, as mosaicml's remote code does)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, MptConfig, MptForCausalLM

    torch.manual_seed(0)
    vocab = len(json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    if kind == "gptneox":
        model: torch.nn.Module = GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=4 * HIDDEN, max_position_embeddings=512, rotary_pct=0.25))
    else:
        model = MptForCausalLM(MptConfig(vocab_size=vocab, d_model=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                                         max_seq_len=512, expansion_ratio=4))
    model.save_pretrained(folder)  # type: ignore[operator]
    for f in tokenizer_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    if kind == "mpt":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "architectures": ["MPTForCausalLM"]}))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path, converter: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("checkpoints")
    return {kind: _checkpoint(kind, base / f"tiny-{kind}", tokenizer_dir) for kind in ("gptneox", "mpt")}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_LLAMA_CONVERTER", raising=False)
    return tmp_path / "cache"


def generate(model: str, variant: str) -> list[int]:
    """A few greedy tokens from a catalog model's variant through harness's llama.cpp backend."""
    from harness.backends.base import Sampling
    from harness.backends.llama_cpp import LlamaCppBackend
    from harness.devices import load_profile

    m = load_manifest(model)
    backend = LlamaCppBackend()
    backend.load(resolve_variant(m, variant), load_profile("laptop-cpu"), m)
    try:
        return list(backend.stream("Hello, how are you?", Sampling(max_tokens=6, temperature=0.0, seed=1)))
    finally:
        backend.close()


def converted(r: CliResult) -> dict[str, dict]:  # type: ignore[type-arg]
    assert r.code == 0, r.err
    return {v["variant"]: v for v in json.loads(r.out)["variants"]}


def test_an_mpt_checkpoint_is_converted_quantized_and_run(cli, checkpoints: dict[str, Path], converter: Path,
                                                          cache: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "convert", checkpoints["mpt"], "--name", "tiny-mpt", "--to", "q8_0", "--converter", converter,
            "--json")
    files = converted(r)
    assert json.loads(r.out)["converted_now"] is True
    assert read_info(Path(files["F16"]["path"]))["architecture"] == "mpt"
    q8 = read_info(Path(files["Q8_0"]["path"]))
    assert (q8["architecture"], q8["file_type"]) == ("mpt", "Q8_0")
    assert files["F16"]["path"].startswith(str(cache / "converted")) and files["Q8_0"]["derived_from"] == "F16"
    m = load_manifest("tiny-mpt")  # written to the user catalog: --model tiny-mpt runs it
    assert source_kind(m) == "convert" and m.default_variants == ("Q8_0",) and m.chat_format == "completion"
    assert len(generate("tiny-mpt", "Q8_0")) >= 1
    again = cli("models", "convert", "tiny-mpt", "--json")  # cached: no converter needed
    assert converted(again)["F16"]["sha256"] == files["F16"]["sha256"]
    assert json.loads(again.out)["converted_now"] is False


@pytest.fixture
def hub(checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The tiny GPT-NeoX checkpoint as a Hub repository of the stand-in Hub."""
    from harness.variants import hf

    folder = checkpoints["gptneox"]
    h = FakeHub()
    h.add(HubRepo("test-org/tiny-neox", COMMIT, [
        HubFile("README.md", data=b"# tiny\n", lfs=False),
        *(HubFile(p.name, p, lfs=p.suffix == ".safetensors") for p in sorted(folder.iterdir())),
    ], card={"license": "apache-2.0"}))
    h.start()
    for k in [k for k in __import__("os").environ if k.startswith("HF_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hf.clear_listings()
    yield h
    hf.clear_listings()
    h.stop()


def test_a_gptneox_checkpoint_on_the_hub_is_converted_quantized_and_run(cli, hub: FakeHub, converter: Path,
                                                                        cache: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "convert", "hf:test-org/tiny-neox", "--name", "tiny-neox", "--to", "Q8_0", "--converter",
            converter, "--json")
    files = converted(r)
    assert read_info(Path(files["Q8_0"]["path"]))["architecture"] == "gptneox"
    assert "/tiny-neox/" not in files["F16"]["path"]  # the converted file is cached by checkpoint, not by name
    downloaded = {q["path"].rsplit("/", 1)[-1] for q in hub.requests if "/resolve/" in q.get("path", "")}
    assert "model.safetensors" in downloaded and "README.md" not in downloaded
    assert len(generate("tiny-neox", "Q8_0")) >= 1


def _folder(tmp_path: Path, config: dict | None) -> Path:  # type: ignore[type-arg]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_without_config_json_is_refused(cli, tmp_path: Path, cache: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "convert", _folder(tmp_path, None))
    assert r.code == 2 and "has no config.json: it is not a Hugging Face checkpoint" in r.err
    assert not (cache / "converted").exists() or not any((cache / "converted").rglob("*.gguf"))


def test_an_architecture_the_converter_lacks_is_named(cli, tmp_path: Path, converter: Path,
                                                      cache: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("models", "convert", _folder(tmp_path, {"architectures": ["MptForCausalLM"]}), "--converter", converter)
    assert r.code == 2
    assert "architecture MptForCausalLM is not one llama.cpp's converter" in r.err
    assert "did you mean 'MPTForCausalLM'?" in r.err


def test_a_failing_converter_says_its_last_line(cli, tmp_path: Path, cache: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    script = tmp_path / "convert_hf_to_gguf.py"
    script.write_text("import sys\nprint('INFO: loading', file=sys.stderr)\n"
                      "print('ValueError: the weights are not what the config says', file=sys.stderr)\nsys.exit(3)\n")
    r = cli("models", "convert", _folder(tmp_path, {"architectures": ["GPTNeoXForCausalLM"]}), "--converter", script)
    errors = [line for line in r.err.splitlines() if line.startswith("harness: error:")]
    assert r.code == 2 and len(errors) == 1
    assert "failed (exit 3): ValueError: the weights are not what the config says (log: " in errors[0]


def test_missing_torch_names_the_export_extra(cli, tmp_path: Path, cache: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "torch", None)
    r = cli("models", "convert", _folder(tmp_path, {"architectures": ["GPTNeoXForCausalLM"]}))
    assert r.code == 2 and "needs the Python package 'torch'" in r.err and "pip install 'harness[export]'" in r.err


def test_other_bad_input(cli, tmp_path: Path, cache: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _folder(tmp_path, {"architectures": ["GPTNeoXForCausalLM"]})
    r = cli("models", "convert", folder, "--outtype", "Q4_K_M")
    assert r.code == 2 and "F16, BF16, F32, Q8_0, not 'Q4_K_M'" in r.err
    r = cli("models", "convert", folder, "--to", "Q4_K_MM")
    assert r.code == 2 and "--to Q4_K_MM is not a GGUF variant (did you mean 'Q4_K_M'?)" in r.err
    r = cli("models", "convert", "smollm2-135m-instruct")
    assert r.code == 2 and "is not a checkpoint to convert (its source is package)" in r.err
    r = cli("models", "convert", folder, "--converter", tmp_path / "nowhere.py")
    assert r.code == 2 and "no such file or folder" in r.err
    r = cli("models", "convert", "hf:not a repo")
    assert r.code == 2 and "is not a Hub repository" in r.err


def test_the_study_models_are_converted_checkpoints() -> None:
    mpt, stablelm = load_manifest("mpt-7b-chat"), load_manifest("stablelm-tuned-alpha-7b")
    assert [source_kind(mpt), source_kind(stablelm)] == ["convert", "convert"]
    assert (mpt.source["convert"], stablelm.source["convert"]) == ("hf:mosaicml/mpt-7b-chat",
                                                                  "hf:stabilityai/stablelm-tuned-alpha-7b")
    assert "Q4_K_M" in mpt.default_variants and "Q4_K_M" in stablelm.default_variants
    assert "does not run" not in (mpt.notes + stablelm.notes + mpt.description + stablelm.description)
