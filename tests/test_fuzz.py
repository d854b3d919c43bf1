"""Fuzzing every importer and every TOML loader (hypothesis, bounded): random bytes and random rows that are
structured but wrong. Each input ends in a clean exit 2 (one line, the store's bytes unchanged) or a successful
import, never an exception."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.humans import FORMATS

sys.path.insert(0, str(Path(__file__).parent / "adversarial"))
import stores  # noqa: E402

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", '"', '""', "\n", ",", "\x00", "=1+1", "[/]", "$\\x$", "N/A", "-1", "3", "1e999", "nan", "\ufeff", "\r\n"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)

HEADERS = {
    "labels-csv": ["goal", "prompt", "target_response", "human1", "human2", "human_majority", "judge_cf"],
    "rankings-csv": ["prompt", "model", "output", "rank", "rater"],
    "llm-harm": ["Prompt", "Model 1 - Mistral-7B", "Model 2 - MPT-7B", "Model 3 - StableLM-alpha-7B", "Ranking"],
    "prompts-csv": ["id", "text", "category", "benign"],
}
KEYS = {
    "rankings-jsonl": ["prompt", "outputs", "ranking", "rater", "models"],
    "pairwise-jsonl": ["chosen", "rejected", "prompt"],
    "prompts-jsonl": ["id", "text", "category", "benign"],
}


@contextlib.contextmanager
def quiet() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def play(args: list[str], store: Path | None) -> None:
    """Run the command: exit 0, or exit 2 with one error line and the store unchanged."""
    before = hashlib.sha256(store.read_bytes()).hexdigest() if store is not None and store.exists() else None
    with quiet() as (_, err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    text = err.getvalue()
    assert code in (0, 2), f"exit {code} for {args}: {text[-2000:]}"
    assert "Traceback" not in text, text[-3000:]
    if code == 2:
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("harness: error: "), text[-2000:]
        if before is not None:
            assert hashlib.sha256(store.read_bytes()).hexdigest() == before, f"store changed by a refused {args}"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "template.sqlite"
    stores.build(path, "plain")
    return path


def _csv(header: list[str], rows: list[list[str]]) -> str:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _work(template: Path) -> tuple[Path, Path]:
    d = Path(tempfile.mkdtemp(prefix="harness-fuzz-"))
    store = d / "store.sqlite"
    shutil.copy(template, store)
    return d, store


# -- importers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_into_every_importer(fmt: str, data: bytes, template: Path) -> None:
    d, store = _work(template)
    try:
        target = d / "input"
        if fmt == "llm-harm":
            (target / "raw_submissions").mkdir(parents=True)
            (target / "raw_submissions" / "output_Group_1.csv").write_bytes(data)
        else:
            target.write_bytes(data)
        play(["humans", "import", fmt, str(target), "--store", str(store)], store)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f in HEADERS])
@FUZZ
@given(rows=st.lists(st.lists(TEXT, min_size=0, max_size=8), min_size=1, max_size=6))
def test_wrong_rows_into_csv_importers(fmt: str, rows: list[list[str]], template: Path) -> None:
    d, store = _work(template)
    try:
        text = _csv(HEADERS[fmt], rows)
        if fmt == "llm-harm":
            target = d / "release"
            (target / "raw_submissions").mkdir(parents=True)
            (target / "raw_submissions" / "output_Group_1.csv").write_text(text, encoding="utf-8")
        else:
            target = d / "input.csv"
            target.write_text(text, encoding="utf-8")
        play(["humans", "import", fmt, str(target), "--store", str(store)], store)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f in KEYS])
@FUZZ
@given(objects=st.lists(st.dictionaries(st.sampled_from(KEYS["rankings-jsonl"] + KEYS["pairwise-jsonl"]), JSON,
                                        max_size=5) | JSON, min_size=1, max_size=5))
def test_wrong_objects_into_jsonl_importers(fmt: str, objects: list[Any], template: Path) -> None:
    d, store = _work(template)
    try:
        target = d / "input.jsonl"
        target.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
        play(["humans", "import", fmt, str(target), "--store", str(store)], store)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_random_bytes_as_a_prompt_set(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"p{suffix}"
        src.write_bytes(data)
        play(["prompts", "import", str(src), "--out", str(Path(tmp) / "out.jsonl")], None)


@FUZZ
@given(rows=st.lists(st.lists(TEXT, max_size=5), min_size=1, max_size=6),
       objects=st.lists(st.dictionaries(st.sampled_from(KEYS["prompts-jsonl"]), JSON, max_size=4), max_size=4))
def test_wrong_rows_as_a_prompt_set(rows: list[list[str]], objects: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "p.csv"
        csv_path.write_text(_csv(HEADERS["prompts-csv"], rows), encoding="utf-8")
        play(["prompts", "import", str(csv_path), "--out", str(Path(tmp) / "a.jsonl")], None)
        jsonl = Path(tmp) / "p.jsonl"
        jsonl.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
        play(["prompts", "import", str(jsonl), "--out", str(Path(tmp) / "b.jsonl")], None)


# -- TOML loaders --------------------------------------------------------------------------------------
DEVICE_FIELDS = ["description", "kind", "threads", "n_gpu_layers", "n_batch", "n_ctx", "onnx_providers",
                 "memory_budget", "peak_bandwidth_gbps", "cpu_cores", "ram", "gpu", "notes", "match", "name"]
MODEL_FIELDS = ["name", "description", "default_variants", "license", "parameters", "notes", "hf_tokenizer"]
JUDGE_FIELDS = ["description", "kind", "mode", "model", "model_path", "base_url", "api_key_env", "rubric",
                "structured_output", "logprobs", "expected_score", "concurrency", "order", "max_score",
                "harmful_threshold", "max_outputs", "max_output_chars", "n_ctx", "n_threads", "members", "combine",
                "ties"]
TOML_VALUE = st.recursive(st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
                          | st.floats(allow_nan=True) | TEXT,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                          max_leaves=6)


def _toml(fields: list[str], extra_tables: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    top = st.dictionaries(st.sampled_from(fields), TOML_VALUE, max_size=6)
    tables = st.fixed_dictionaries({}, optional={name: st.dictionaries(st.sampled_from(keys) | TEXT, TOML_VALUE,
                                                                       max_size=4) | TOML_VALUE
                                              for name, keys in extra_tables.items()})
    return st.tuples(top, tables).map(lambda t: {**t[0], **t[1]})


def _write_toml(path: Path, doc: dict[str, Any] | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, bytes):
        path.write_bytes(doc)
        return
    try:
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    except (TypeError, ValueError):  # a value TOML cannot hold (e.g. nan inside arrays of mixed types)
        path.write_text("description = \"unwritable\"\n", encoding="utf-8")


def _catalog_case(kind: str, doc: dict[str, Any] | bytes, args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write_toml(Path(tmp) / kind / "fuzzed.toml", doc)
        play(["--catalog", tmp, *args], None)


@FUZZ
@given(doc=_toml(DEVICE_FIELDS, {}) | st.binary(max_size=200))
def test_fuzzed_device_profiles(doc: dict[str, Any] | bytes) -> None:
    _catalog_case("devices", doc, ["devices", "show", "fuzzed"])


@FUZZ
@given(doc=_toml(MODEL_FIELDS, {"source": ["path", "package", "file", "assemble", "variant"],
                                "chat": ["format", "completion_template", "stop"]}) | st.binary(max_size=200))
def test_fuzzed_model_manifests(doc: dict[str, Any] | bytes) -> None:
    _catalog_case("models", doc, ["models", "list"])


@FUZZ
@given(doc=_toml(JUDGE_FIELDS, {"sampling": ["temperature", "top_p", "max_tokens", "seed"],
                                "retry": ["timeout_s", "max_retries", "backoff_initial_s", "backoff_max_s"],
                                "price": ["input_per_1k_usd", "output_per_1k_usd"],
                                "rubrics": ["rank", "score", "pairwise", "refusal"]}) | st.binary(max_size=200))
def test_fuzzed_judge_configs(doc: dict[str, Any] | bytes) -> None:
    _catalog_case("judges", doc, ["judge", "--list"])
