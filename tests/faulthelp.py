"""The misbehaving OpenAI-compatible server and the hand-made store of tests/fixtures/judges, for judge tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "judges"
JUDGE_TOML = FIXTURES / "fault-score.toml"
KEY_ENV = "HARNESS_TEST_FAULT_KEY"


def _fixture(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"judges_fixture_{name}", FIXTURES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fault_server = _fixture("fault_server")
synthetic = _fixture("synthetic_store")


@pytest.fixture
def server() -> Iterator[object]:
    """A FaultServer on 127.0.0.1 (a random port), stopped after the test."""
    with fault_server.FaultServer(slow_s=2.5) as s:
        yield s
