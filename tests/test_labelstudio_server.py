"""The Label Studio round trip through a real Label Studio server on 127.0.0.1: create a project with the exported
labeling config through its REST API, import the exported tasks, submit annotations through the API, export the
project as JSON, import that with `harness humans import label-studio`: the ratings equal what was submitted.

Label Studio pins numpy, openai and pyarrow versions that conflict with ours, so it lives in its own virtual
environment, `.venv-labelstudio` (scripts/test.sh creates it; HARNESS_LABEL_STUDIO may name another
`label-studio` executable). One server serves the whole test session; it is stopped by its PID."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labelhelp import add_adversarial
from storehelp import table_rows

from harness.humans.plan import read_plan
from harness.store import Store

REPO = Path(__file__).resolve().parent.parent
TOKEN = "harness-test-token-0123456789"
STARTUP_S = 900  # first start migrates a fresh database: minutes on 2 busy cores


def _executable() -> Path:
    named = os.environ.get("HARNESS_LABEL_STUDIO")
    exe = Path(named) if named else REPO / ".venv-labelstudio" / "bin" / "label-studio"
    if not exe.is_file():
        msg = (f"Label Studio is not installed at {exe}: run scripts/test.sh, or python3 -m venv .venv-labelstudio && "
               ".venv-labelstudio/bin/pip install label-studio==1.23.2")
        if named or os.environ.get("HARNESS_REQUIRE_LABEL_STUDIO"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


@dataclass
class LabelStudio:
    url: str
    log: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                text = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:2000]}") from None
        return json.loads(text) if text else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    exe = _executable()
    data = tmp_path_factory.mktemp("label-studio")
    log = data / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "PYTHON"))}
    env.update({"LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_USERNAME": "harness@example.org",
                "LABEL_STUDIO_PASSWORD": "harness-test-password", "LABEL_STUDIO_USER_TOKEN": TOKEN,
                "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "PYTHONUNBUFFERED": "1"})  # its log says where it listens
    port = _free_port()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
                                 str(port), "--enable-legacy-api-token", "--data-dir", str(data)],
                                cwd=data, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        url = None
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"label-studio exited {proc.returncode}: {log.read_text()[-3000:]}")
            m = re.search(r"Starting development server at (http://127\.0\.0\.1:\d+)/", log.read_text())
            if m:
                url = m.group(1)  # it moves to another port when the one asked for is taken
            if url:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"label-studio did not start in {STARTUP_S}s: {log.read_text()[-3000:]}")
            time.sleep(1)
        ls = LabelStudio(url, log)
        assert ls.call("GET", "/api/current-user/whoami")["email"] == "harness@example.org"
        yield ls
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the process this fixture started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def label_store(small_store: Path) -> Path:
    add_adversarial(small_store)
    return small_store


def _tasks_of(ls: LabelStudio, project: int) -> list[dict[str, Any]]:
    got = ls.call("GET", f"/api/tasks?project={project}&page_size=1000")
    return sorted(got["tasks"] if isinstance(got, dict) else got, key=lambda t: t["id"])


def _round_trip(ls: LabelStudio, store: Path, tmp_path: Path, cli: Any, task: str,
                answers: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    plan = tmp_path / "plan.jsonl"
    assert cli("humans", "sample", "--store", store, "--per-variant", "5", "--out", plan).code == 0
    out = tmp_path / f"ls-{task}"
    assert cli("humans", "export-tasks", "--plan", plan, "--format", "label-studio", "--task", task, "--out",
               out).code == 0
    config = (out / "labeling-config.xml").read_text(encoding="utf-8")
    project = ls.call("POST", "/api/projects", {"title": f"harness {task} {tmp_path.name}"[:50], "label_config": config})
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    imported = ls.call("POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == len(tasks)
    stored = _tasks_of(ls, project["id"])
    assert [t["data"]["harness"] for t in stored] == [t["data"]["harness"] for t in tasks]  # as exported, in order
    for t, answer in zip(stored, answers):
        if answer is None:
            continue
        result, lead_time, cancelled = answer
        ls.call("POST", f"/api/tasks/{t['id']}/annotations",
                {"result": result, "lead_time": lead_time, "was_cancelled": cancelled})
    export = ls.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    path = tmp_path / f"export-{task}.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    r = cli("humans", "import", "label-studio", path, "--store", store, "--json")
    assert r.code == 0, r.err
    return stored, json.loads(r.out)


def _ranker(harmful: list[str], safe: list[str]) -> list[dict[str, Any]]:
    return [{"from_name": "harm_rank", "to_name": "outputs", "type": "ranker", "origin": "manual",
             "value": {"ranker": {"harmful": harmful, "not_harmful": safe}}}]


def test_rank_round_trip_through_label_studio(label_studio: LabelStudio, label_store: Path, tmp_path: Path,
                                              cli: Any) -> None:
    submitted = [(_ranker(["B", "A"], []), 12.5, False), (_ranker([], ["A", "B"]), 3.0, False),
                 ([], 2.0, True), (_ranker(["A"], ["B"]), 7.75, False), None]
    stored, report = _round_trip(label_studio, label_store, tmp_path, cli, "rank", submitted)
    assert report["excluded"] == {"skipped or cancelled annotations": 1}
    assert report["ratings_written"] == 6
    with Store.open(label_store, readonly=True) as store:
        rows = table_rows(store, "ratings", "source = 'import:label-studio'")
    user = label_studio.call("GET", "/api/current-user/whoami")["id"]
    got = {r["sample_key"]: r for r in rows}
    assert {r["annotator"] for r in rows} == {f"label-studio:{user}"}
    expected_codes = {0: [2, 1], 1: [0, 0], 3: [1, 0]}  # A, B as shown; harmful top = least harmful = 1
    assert len(got) == 6
    for t, codes in expected_codes.items():
        keys_ab = stored[t]["data"]["harness"]["sample_keys"]
        for j, key in enumerate(keys_ab):
            r = got[key]
            assert (r["task"], r["code"], r["harmful"], r["valid"]) == ("rank", codes[j], int(codes[j] > 0), True)
            assert r["extra"]["seconds"] == submitted[t][1]  # type: ignore[index]
            assert r["extra"]["shown_as"] == "AB"[j] and r["rater"] == "human"
            assert r["extra"]["label_studio"]["task"] == stored[t]["id"]
    items = {it.item: it for it in read_plan(tmp_path / "plan.jsonl")}
    for t in expected_codes:
        it = items[stored[t]["data"]["harness"]["item"]]
        assert {r["item_id"] for r in rows if r["sample_key"] in it.sample_keys} == {it.item_id}


def test_label_round_trip_through_label_studio(label_studio: LabelStudio, label_store: Path, tmp_path: Path,
                                               cli: Any) -> None:
    def choice(v: str) -> list[dict[str, Any]]:
        return [{"from_name": "harm_label", "to_name": "output", "type": "choices", "origin": "manual",
                 "value": {"choices": [v]}}]

    submitted = [(choice("Harmful"), 1.5, False), (choice("Not harmful"), 2.5, False), ([], 1.0, True)]
    stored, report = _round_trip(label_studio, label_store, tmp_path, cli, "label", submitted)
    assert report["ratings_written"] == 2 and report["excluded"] == {"skipped or cancelled annotations": 1}
    with Store.open(label_store, readonly=True) as store:
        rows = {r["sample_key"]: r for r in table_rows(store, "ratings", "source = 'import:label-studio'")}
    for t, harmful in ((0, 1), (1, 0)):
        meta = stored[t]["data"]["harness"]
        key = meta["sample_keys"]["AB".index(meta["shown_as"])]
        assert (rows[key]["task"], rows[key]["harmful"], rows[key]["code"]) == ("label", harmful, harmful)
        assert rows[key]["extra"]["seconds"] == submitted[t][1]
