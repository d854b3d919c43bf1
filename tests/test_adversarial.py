"""Plays the adversarial corpus (tests/adversarial/*.toml, one file per theme): every hostile or careless input ends with the
exit code and message it must, and the store's bytes stay as they were."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.tomlfile import read_toml

HERE = Path(__file__).parent / "adversarial"
sys.path.insert(0, str(HERE))
import ggufs  # noqa: E402
import stores  # noqa: E402

CASES: list[dict[str, Any]] = [case for path in sorted(HERE.glob("*.toml")) for case in read_toml(path).get("case", [])]
SPECIAL_TEXT = {"DEEP": lambda: "[" * 100_000 + "]" * 100_000 + "\n",
                "LONGFIELD": lambda: "id,text\na,\"" + "x" * 200_000 + "\"\n"}
SPECIAL_HEX = {"LATENUL": lambda: ("id,text\n" + "a,hello\n" * 700).encode() + b"b,bad\x00byte\n",
               "NESTED_LOOPS_GGUF": lambda: ggufs.with_chat_template(ggufs.NESTED_LOOPS)}


def _digits(text: str) -> str:
    """'{digits:5000}' in a file's text or an argument: that many nines (numbers too long to write by hand)."""
    return re.sub(r"\{digits:(\d+)\}", lambda m: "9" * int(m.group(1)), text)


def _endpoint(case: dict[str, Any]) -> Any:
    """The hostile OpenAI-compatible server (tests/fixtures/judges/fault_server.py) when the case's args name
    {endpoint} (its origin; the path chooses the fault: {endpoint}/usagenan/v1), started; else None."""
    if not any("{endpoint}" in a for a in case["args"]):
        return None
    from faulthelp import fault_server

    return fault_server.FaultServer(drip_s=0.2).__enter__()


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_the_corpus_is_well_formed() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 60
    for c in CASES:
        assert isinstance(c["args"], list) and isinstance(c["exit"], int), c["name"]
        assert c.get("store", "plain") in ("plain", "hostile", "escapes", "foreign", "newer", "none"), c["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    files = tmp_path / "files"
    files.mkdir()
    for rel, text in case.get("files", {}).items():
        p = files / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(SPECIAL_TEXT[text]() if text in SPECIAL_TEXT else _digits(text), encoding="utf-8")
    for enc in case.get("encoded", []):
        p = files / enc["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(enc["text"].encode(enc["encoding"]))
    for raw in case.get("raw", []):
        p = files / raw["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(SPECIAL_HEX[raw["hex"]]() if raw["hex"] in SPECIAL_HEX else bytes.fromhex(raw["hex"]))
    for gz in case.get("gzip", []):  # [{path, text}]: written gzip-compressed
        (files / gz["path"]).write_bytes(gzip.compress(gz["text"].encode("utf-8")))
    for name in case.get("fifos", []):  # named pipes: must be refused before they are opened
        os.mkfifo(files / name)
    for name, kind_ in case.get("shards", {}).items():  # other stores (stores.build kinds) under {files}
        stores.build(files / name, kind_)
    store = tmp_path / "store.sqlite"
    kind = case.get("store", "plain")
    if kind != "none":
        stores.build(store, kind)
    if case.get("readonly"):
        store.chmod(stat.S_IRUSR | stat.S_IRGRP)
    before = _sha(store)
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    endpoint = _endpoint(case)
    subst = {"{store}": str(store), "{tmp}": str(tmp_path), "{files}": str(files), "{catalog}": str(files),
             "{endpoint}": endpoint.origin if endpoint else ""}

    def fill(s: str) -> str:
        for k, v in subst.items():
            s = s.replace(k, v)
        return _digits(s)

    for name, target in case.get("links", {}).items():  # symbolic links under {files}
        os.symlink(fill(target), files / name)

    pwned = Path("/tmp/harness-pwned")
    pwned.unlink(missing_ok=True)
    prior = {f: _sha(f) for f in tmp_path.rglob("*") if f.is_file()}  # the case's inputs, its store included
    try:
        r = cli(*[fill(a) for a in case["args"]])
    finally:
        if endpoint:
            endpoint.__exit__(None, None, None)
    assert r.code == case["exit"], f"exit {r.code}, expected {case['exit']}\nstdout: {r.out[-2000:]}\nstderr: {r.err[-2000:]}"
    message = case.get("message")
    if case["exit"] == 2:
        lines = [line for line in r.err.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("harness: error: "), r.err
        assert "Traceback" not in r.err and "Error: " not in lines[-1].split("harness: error: ", 1)[1][:40], r.err
        if message:
            assert message in lines[-1], lines[-1]
    elif message:
        assert message in r.out + r.err, (r.out + r.err)[-3000:]
    for secret in case.get("absent", []):  # an API key, a raw ESC: in no output, no file the case left (inputs aside)
        assert secret not in r.out + r.err, f"{secret!r} in the output: {(r.out + r.err)[-3000:]!r}"
        for f in tmp_path.rglob("*"):  # every file the command wrote or changed
            # (SQLite's -shm is a binary index of the WAL, never text: a one-byte fragment matches it by chance)
            if f.is_file() and files not in f.parents and prior.get(f) != _sha(f) and not f.name.endswith("-shm"):
                assert secret.encode() not in f.read_bytes(), f"{secret!r} was written to {f}"
    if case.get("unchanged", True):
        assert _sha(store) == before, "the store's bytes changed"
        for suffix in ("-wal", "-journal"):
            side = store.with_name(store.name + suffix)
            assert not side.exists() or side.stat().st_size == 0 or kind == "none", f"{side.name} was written"
    if "out_contains" in case:
        out = Path(fill(case.get("out", "{tmp}/out")))
        assert out.exists(), f"{out} was not written"
        assert case["out_contains"] in out.read_text(encoding="utf-8", errors="replace")
        for fragment in case.get("out_absent", []):
            assert fragment not in out.read_text(encoding="utf-8", errors="replace"), fragment
    for name in case.get("still_links", []):  # written through, never replaced
        assert (files / name).is_symlink(), f"{name} is no longer a symbolic link"
    assert not pwned.exists(), "a rubric ran code"
    if case.get("readonly"):
        store.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert os.environ.get("HARNESS_CACHE_DIR") == str(tmp_path / "cache")
    json.dumps(case)  # every case stays plain data
