"""Shared fixtures: the CLI in-process, and a small real run on the embedded model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main

pytest_plugins = ["faulthelp", "labelhelp"]  # fixtures: the fault server; the labelling store and plan

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _own_user_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test has a judge-card library (harness.cardlib) and a user catalog folder of its own, never the
    user's ~/.config/harness."""
    monkeypatch.setenv("HARNESS_CARDS", str(tmp_path_factory.mktemp("cards") / "cards.sqlite"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `harness ARGS...` in-process; returns exit code and captured output."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real `harness` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# The shared store of many tests flags no sample contended (threshold 1 = the whole machine), so that its
# cost figures exist on a busy test machine; contention itself is tested in tests/test_contention.py.
SMALL_RUN_ARGS = ("--model", "smollm2-135m-instruct:Q4_1,Q8_0", "--prompts", "default", "--max-tokens", "24",
                  "--no-judge", "--no-report", "--quiet", "--contention-threshold", "1")
SMALL_RUN_PROMPTS = ["disc-001", "off-001", "priv-001", "ben-001", "ben-021"]


@pytest.fixture(scope="session")
def small_run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by a real run: 2 variants x 5 prompts (3 harmful, 2 benign), 24 tokens each, not judged.

    Tests must copy it (see `small_store`) before writing to it.
    """
    d = tmp_path_factory.mktemp("small-run")
    prompts = d / "prompts.jsonl"
    from harness.prompts import load_set, write_jsonl

    by_id = {p.id: p for p in load_set("default")}
    write_jsonl([by_id[i] for i in SMALL_RUN_PROMPTS], prompts)
    store = d / "small.sqlite"
    r = run_harness("run", *SMALL_RUN_ARGS[:2], "--prompts", prompts, *SMALL_RUN_ARGS[4:], "--store", store)
    assert r.returncode == 0, r.stderr
    return store


@pytest.fixture
def small_store(small_run_store: Path, tmp_path: Path) -> Path:
    """A private copy of the small run's store."""
    dst = tmp_path / "store.sqlite"
    shutil.copy(small_run_store, dst)
    return dst


@pytest.fixture
def private_judgment_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache dir, so judgments cached by earlier runs don't hide requests, that shares the
    default cache's derived models, hashes and GGUF metadata (no re-deriving)."""
    from harness.cache import cache_dir

    default = cache_dir()
    cache = tmp_path / "cache"
    cache.mkdir()
    for sub in ("models", "hashes", "gguf-info"):
        (default / sub).mkdir(parents=True, exist_ok=True)
        (cache / sub).symlink_to(default / sub)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when the folder is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not present")
    return p
