"""Label Studio round trip: the exported tasks and labeling config, the importer against Label Studio's documented
JSON export format (fixtures written by hand) and hostile files, and the plan-csv sheet round trip.

The round trip through a real Label Studio server is in test_labelstudio_server.py."""

from __future__ import annotations

import copy
import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from labelhelp import SCRIPT_OUTPUT, TEMPLATE_OUTPUT
from storehelp import count, table_rows

from harness.humans.plan import read_plan
from harness.store import Store


def _export(cli: Any, plan: Path, out: Path, fmt: str = "label-studio", task: str = "rank") -> Path:
    r = cli("humans", "export-tasks", "--plan", plan, "--format", fmt, "--task", task, "--out", out)
    assert r.code == 0, r.err
    return out


def ranker(harmful: list[str], not_harmful: list[str]) -> list[dict[str, Any]]:
    """A Ranker result as Label Studio writes it."""
    return [{"from_name": "harm_rank", "to_name": "outputs", "type": "ranker", "origin": "manual",
             "value": {"ranker": {"harmful": harmful, "not_harmful": not_harmful}}}]


def choice(value: str) -> list[dict[str, Any]]:
    return [{"from_name": "harm_label", "to_name": "output", "type": "choices", "origin": "manual",
             "id": "x1", "value": {"choices": [value]}}]


def annotation(ann_id: int, user: Any, result: list[dict[str, Any]], lead_time: float = 10.0,
               cancelled: bool = False) -> dict[str, Any]:
    """An annotation in Label Studio's JSON export format (docs: guide/task_format)."""
    return {"id": ann_id, "completed_by": user, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": "2026-01-02T10:00:00.000000Z", "updated_at": "2026-01-02T10:00:00.000000Z",
            "lead_time": lead_time, "prediction": {}, "result_count": len(result), "task": 0, "project": 7}


def ls_export(tasks: list[dict[str, Any]], annotations: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What Label Studio's JSON export of a project made from these tasks looks like."""
    return [{"id": i, "data": t["data"], "annotations": annotations.get(i, []), "drafts": [], "predictions": [],
             "meta": {}, "project": 7, "inner_id": i, "total_annotations": len(annotations.get(i, [])),
             "cancelled_annotations": 0} for i, t in enumerate(tasks, start=1)]


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _ratings(store_path: Path, source: str) -> dict[tuple[str, str], dict[str, Any]]:
    with Store.open(store_path, readonly=True) as store:
        rows = table_rows(store, "ratings", "source = ?", [source])
    return {(r["annotator"], r["sample_key"]): r for r in rows}


def test_exported_tasks_and_config(plan_path: Path, tmp_path: Path, cli: Any) -> None:
    out = _export(cli, plan_path, tmp_path / "ls")
    items = read_plan(plan_path)
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    assert len(tasks) == len(items) == 5
    for task, it in zip(tasks, items):
        data = task["data"]
        assert data["prompt"] == it.prompt
        assert [o["id"] for o in data["outputs"]] == ["A", "B"]
        assert [o["title"] for o in data["outputs"]] == ["Content A", "Content B"]
        assert [o["body"] for o in data["outputs"]] == [it.outputs[i].output for i in it.shown_order]
        meta = data["harness"]
        assert meta == {"format": 1, "task": "rank", "plan": it.plan, "item": it.item, "position": it.position,
                        "sample_keys": [it.outputs[i].sample_key for i in it.shown_order]}
    text = (out / "tasks.json").read_text(encoding="utf-8")
    assert "smollm2" not in text and "Q4_1" not in text and "Q8_0" not in text  # blind
    root = ET.fromstring((out / "labeling-config.xml").read_text(encoding="utf-8"))
    rank = root.find("Ranker")
    assert rank is not None and rank.get("name") == "harm_rank" and rank.get("toName") == "outputs"
    assert [(b.get("name"), b.get("default")) for b in rank.findall("Bucket")] == \
        [("harmful", None), ("not_harmful", "true")]
    assert root.find("List").get("value") == "$outputs"  # type: ignore[union-attr]
    label = _export(cli, plan_path, tmp_path / "ls-label", task="label")
    per_output = json.loads((label / "tasks.json").read_text(encoding="utf-8"))
    assert len(per_output) == 10 and per_output[0]["data"]["title"] == "Content A"
    assert per_output[1]["data"]["harness"]["shown_as"] == "B"
    choices = ET.fromstring((label / "labeling-config.xml").read_text(encoding="utf-8")).find("Choices")
    assert choices is not None and [c.get("value") for c in choices] == ["Harmful", "Not harmful"]


def test_import_a_label_studio_export(label_store: Path, plan_path: Path, tmp_path: Path, cli: Any) -> None:
    tasks = json.loads((_export(cli, plan_path, tmp_path / "ls") / "tasks.json").read_text(encoding="utf-8"))
    sk = [t["data"]["harness"]["sample_keys"] for t in tasks]  # per task, A then B
    anns = {
        1: [annotation(11, 1, ranker(["B", "A"], []), lead_time=12.5),  # B least harmful (1), A most (2)
            annotation(12, 2, [], lead_time=3.0, cancelled=True)],  # skipped: excluded, counted
        2: [annotation(21, 1, ranker([], ["A", "B"]), lead_time=4.0),
            annotation(22, 2, ranker(["A"], ["B"]), lead_time=7.25)],
        # task 3: nobody annotated it
        4: [annotation(41, 1, [], lead_time=1.0)],  # submitted empty: excluded, counted
        5: [annotation(51, {"id": 3, "email": "carol@example.org"}, ranker(["A"], ["B"]), lead_time=5.0),
            annotation(52, {"id": 3, "email": "carol@example.org"}, ranker(["B"], ["A"]), lead_time=6.0)],
    }
    export = _write(tmp_path / "export.json", ls_export(tasks, anns))
    r = cli("humans", "import", "label-studio", export, "--store", label_store, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["rows_read"] == 7 and report["ratings_written"] == 8
    assert report["excluded"] == {"annotations with an empty result": 1, "skipped or cancelled annotations": 1,
                                  "earlier annotations by the same annotator on the same task (the latest counts)": 1}
    got = _ratings(label_store, "import:label-studio")
    expected = {("label-studio:1", sk[0][0]): 2, ("label-studio:1", sk[0][1]): 1,
                ("label-studio:1", sk[1][0]): 0, ("label-studio:1", sk[1][1]): 0,
                ("label-studio:2", sk[1][0]): 1, ("label-studio:2", sk[1][1]): 0,
                ("label-studio:carol@example.org", sk[4][0]): 0, ("label-studio:carol@example.org", sk[4][1]): 1}
    assert {k: r["code"] for k, r in got.items()} == expected
    seconds = {("label-studio:1", 0): 12.5, ("label-studio:1", 1): 4.0, ("label-studio:2", 1): 7.25,
               ("label-studio:carol@example.org", 4): 6.0}
    for (who, t), s in seconds.items():
        for j, letter in enumerate("AB"):
            rating = got[(who, sk[t][j])]
            assert rating["extra"]["seconds"] == s and rating["extra"]["shown_as"] == letter
            assert rating["rater"] == "human" and rating["rater_kind"] == "human" and rating["task"] == "rank"
            assert rating["harmful"] == int(expected[(who, sk[t][j])] > 0) and rating["valid"]
            assert rating["extra"]["plan"] == tasks[t]["data"]["harness"]["plan"]
    # Importing again adds nothing; a newer export with a changed answer updates it.
    again = json.loads(cli("humans", "import", "label-studio", export, "--store", label_store, "--json").out)
    assert again["ratings_written"] == 0 and again["ratings_updated"] == 0
    anns[2][0] = annotation(21, 1, ranker(["B"], ["A"]), lead_time=9.0)
    newer = _write(tmp_path / "export2.json", ls_export(tasks, anns))
    updated = json.loads(cli("humans", "import", "label-studio", newer, "--store", label_store, "--json").out)
    assert updated["ratings_written"] == 0 and updated["ratings_updated"] == 1  # only B changed (0 -> 1)
    assert _ratings(label_store, "import:label-studio")[("label-studio:1", sk[1][1])]["code"] == 1


def test_import_label_task_choices(label_store: Path, plan_path: Path, tmp_path: Path, cli: Any) -> None:
    tasks = json.loads((_export(cli, plan_path, tmp_path / "ls", task="label") / "tasks.json").read_text("utf-8"))
    anns = {1: [annotation(1, 5, choice("Harmful"), 2.0)], 2: [annotation(2, 5, choice("Not harmful"), 3.0)]}
    r = cli("humans", "import", "label-studio", _write(tmp_path / "e.json", ls_export(tasks, anns)), "--store",
            label_store, "--json")
    assert r.code == 0, r.err
    got = _ratings(label_store, "import:label-studio")
    a, b = tasks[0]["data"]["harness"]["sample_keys"]
    assert (got[("label-studio:5", a)]["task"], got[("label-studio:5", a)]["harmful"],
            got[("label-studio:5", a)]["label"]) == ("label", 1, "harmful")
    assert (got[("label-studio:5", b)]["harmful"], got[("label-studio:5", b)]["label"]) == (0, "not_harmful")
    assert got[("label-studio:5", b)]["extra"]["shown_as"] == "B" and len(got) == 2


def _bad_exports(tasks: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
    good = ls_export(tasks, {1: [annotation(1, 1, ranker(["A"], ["B"]))]})

    def edit(fn: Any) -> Any:
        e = copy.deepcopy(good)
        fn(e)
        return e

    def foreign(e: Any) -> None:
        e[0]["data"] = {"text": "a review", "label": "pos"}

    return [
        ("another project", edit(foreign), "export of another project"),
        ("another config", edit(lambda e: e[0]["annotations"][0].update(result=[
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}])),
         "not the 'harm_rank' ranker"),
        ("label result on a rank task", edit(lambda e: e[0]["annotations"][0].update(result=choice("Harmful"))),
         "not the 'harm_rank' ranker"),
        ("unknown bucket", edit(lambda e: e[0]["annotations"][0]["result"][0]["value"]["ranker"].update(meh=["A"])),
         "are not harness's"),
        ("an output left out", edit(lambda e: e[0]["annotations"][0].update(result=ranker(["A"], []))),
         "every output must be in exactly one bucket"),
        ("an output twice", edit(lambda e: e[0]["annotations"][0].update(result=ranker(["A", "B"], ["B"]))),
         "every output must be in exactly one bucket"),
        ("edited sample keys", edit(lambda e: e[0]["data"]["harness"].update(
            sample_keys=["nope", e[0]["data"]["harness"]["sample_keys"][1]])), "does not match its sample keys"),
        ("wrong types: annotations", edit(lambda e: e[0].update(annotations="lots")), "task.annotations"),
        ("wrong types: result", edit(lambda e: e[0]["annotations"][0].update(result={"a": 1})), "annotation.result"),
        ("wrong types: completed_by", edit(lambda e: e[0]["annotations"][0].update(completed_by=[1])),
         "completed_by is not a user id"),
        ("wrong types: ranker ids", edit(lambda e: e[0]["annotations"][0].update(result=ranker([1], ["B"]))),
         "exactly one bucket"),
        ("huge field", edit(lambda e: e[0]["annotations"][0].update(completed_by="x" * 1_000_000)),
         "characters long"),
        ("a dict, not a list", {"tasks": good}, "not a list of tasks"),
        ("a list of strings", ["task"], "wrong type"),
    ]


def test_bad_exports_exit_2_and_store_nothing(label_store: Path, plan_path: Path, tmp_path: Path, cli: Any) -> None:
    tasks = json.loads((_export(cli, plan_path, tmp_path / "ls") / "tasks.json").read_text(encoding="utf-8"))
    with Store.open(label_store, readonly=True) as store:
        before = count(store, "ratings")
    cases = _bad_exports(tasks)
    raw_cases = [("not JSON", b"[{]", "is not JSON"), ("deep nesting", b"[" * 100_000 + b"]" * 100_000,
                                                         "nested too deeply"),
                 ("binary", b"\xff\xfe\x00\x01", "not UTF-8"), ("empty", b"", "is not JSON")]
    for name, obj, message in cases + raw_cases:
        path = tmp_path / "bad.json"
        if isinstance(obj, bytes):
            path.write_bytes(obj)
        else:
            _write(path, obj)
        r = cli("humans", "import", "label-studio", path, "--store", label_store)
        assert r.code == 2, (name, r.out, r.err)
        assert message in r.err and r.err.count("\n") == 1, (name, r.err)
    # A good export into a store that does not hold the plan's generations, or into no store at all.
    good = _write(tmp_path / "good.json", ls_export(tasks, {1: [annotation(1, 1, ranker(["A"], ["B"]))]}))
    other = tmp_path / "other.sqlite"
    with Store.open(other) as _store:
        pass
    r = cli("humans", "import", "label-studio", good, "--store", other)
    assert r.code == 2 and "is not in store" in r.err
    r = cli("humans", "import", "label-studio", good, "--store", tmp_path / "missing.sqlite")
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "missing.sqlite").exists()
    with Store.open(label_store, readonly=True) as store:
        assert count(store, "ratings") == before


def test_plan_csv_round_trip(label_store: Path, plan_path: Path, tmp_path: Path, cli: Any) -> None:
    out = _export(cli, plan_path, tmp_path / "csv", fmt="csv")
    items = read_plan(plan_path)
    with open(out / "tasks.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["plan", "item", "position", "prompt", "content_a", "content_b", "sample_keys",
                             "annotator", "ranking", "seconds"]
    cells = [r[c] for r in rows for c in ("prompt", "content_a", "content_b")]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)  # no cell runs as a formula
    assert "'" + TEMPLATE_OUTPUT in cells and SCRIPT_OUTPUT in cells
    text = (out / "tasks.csv").read_text(encoding="utf-8")
    assert "smollm2" not in text and "Q4_1" not in text
    # Two annotators fill it; one row left for later.
    answers = {1: ("dana", "2,1", "30"), 2: ("dana", "N/A,N/A", ""), 3: ("erin", "N/A,1", "12.5"), 4: ("", "", "")}
    filled = tmp_path / "filled.csv"
    with open(filled, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for i, row in enumerate(rows[:4], start=1):
            who, ranking, secs = answers[i]
            w.writerow({**row, "annotator": who, "ranking": ranking, "seconds": secs})
        w.writerow({**rows[0], "annotator": "erin", "ranking": "1,N/A", "seconds": ""})
    r = cli("humans", "import", "plan-csv", filled, "--store", label_store, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["ratings_written"] == 8 and report["excluded"] == {"rows without an answer yet": 1}
    got = _ratings(label_store, "import:plan-csv")
    by_pos = {it.position: it for it in items}

    def shown(pos: int) -> list[str]:
        it = by_pos[pos]
        return [it.outputs[i].sample_key for i in it.shown_order]

    assert [got[("dana", k)]["code"] for k in shown(1)] == [2, 1]
    assert [got[("dana", k)]["code"] for k in shown(2)] == [0, 0]
    assert [got[("erin", k)]["code"] for k in shown(3)] == [0, 1]
    assert [got[("erin", k)]["code"] for k in shown(1)] == [1, 0]
    assert got[("dana", shown(1)[0])]["extra"]["seconds"] == 30.0
    assert got[("erin", shown(3)[1])]["extra"]["seconds"] == 12.5
    assert got[("dana", shown(2)[0])]["extra"]["seconds"] is None

    # A ranking that skips a rank, an unknown sample key, no annotator: exit 2, nothing stored.
    def bad(edit: dict[str, str], message: str, *extra: str) -> None:
        path = tmp_path / "bad.csv"
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerow({**rows[1], "annotator": "fay", "ranking": "1,N/A"})
            w.writerow({**rows[0], "annotator": "fay", "ranking": "1,N/A", **edit})
        with Store.open(label_store, readonly=True) as store:
            before = count(store, "ratings")
        r = cli("humans", "import", "plan-csv", path, "--store", label_store, *extra)
        assert r.code == 2 and message in r.err and "row 3" in r.err and r.err.count("\n") == 1, r.err
        with Store.open(label_store, readonly=True) as store:
            assert count(store, "ratings") == before

    bad({"ranking": "2,2"}, "skips a rank")
    bad({"ranking": "2,N/A"}, "skips a rank")
    bad({"ranking": "1"}, "2 ranks expected")
    bad({"annotator": ""}, "no annotator")
    bad({"sample_keys": "x y"}, "does not match its sample_keys")
    bad({"seconds": "soon"}, "is not a number")
    bad({"annotator": "<script>"}, "not usable")
    r = cli("humans", "import", "plan-csv", filled, "--store", tmp_path / "missing.sqlite")
    assert r.code == 2 and "does not exist" in r.err
