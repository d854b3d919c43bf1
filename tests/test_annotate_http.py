"""The labelling server over plain HTTP (a real server on 127.0.0.1 in a thread): refused posts, protocol errors
as HTTP 400 with nothing stored, skip and undo, several annotators and `harness agree` over their answers, and
the command's bad-input exits."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from storehelp import count, table_rows

from harness.annotate import Labelling, make_server
from harness.annotate.server import AnnotateServer
from harness.humans.plan import read_plan
from harness.store import Store


@dataclass
class Running:
    server: AnnotateServer
    labelling: Labelling
    store: Store
    events: list[str]

    @property
    def port(self) -> int:
        return self.server.app.port


def _serve(store_path: Path, plan: Path, annotator: str | None, task: str = "rank") -> Iterator[Running]:
    store = Store.open(store_path, create=False)
    labelling = Labelling(store, read_plan(plan), task)
    events: list[str] = []
    server = make_server(labelling, port=0, annotator=annotator, on_event=events.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Running(server, labelling, store, events)
    finally:
        server.shutdown()
        server.close()
        thread.join(timeout=10)
        store.close()


@pytest.fixture
def running(label_store: Path, plan_path: Path) -> Iterator[Running]:
    yield from _serve(label_store, plan_path, "alice")


class Client:
    """A browser-like client: keeps the session cookie, sends this server's Origin unless told otherwise."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookie:
            h["Cookie"] = self.cookie
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            h["Origin"] = f"http://127.0.0.1:{self.port}"
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8")
        got = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        if "set-cookie" in got:
            self.cookie = got["set-cookie"].split(";", 1)[0]
        m = re.search(r'name="csrf" value="([^"]+)"', text)
        if m:
            self.csrf = m.group(1)
        return resp.status, got, text

    def get(self) -> str:
        status, _, text = self.request("GET", "/")
        assert status == 200, text
        return text

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None,
             csrf: bool = True) -> tuple[int, dict[str, str], str]:
        data = dict(fields)
        if csrf:
            data["csrf"] = self.csrf or ""
        return self.request("POST", path, urllib.parse.urlencode(data), headers)


def _item_key(html: str) -> str:
    m = re.search(r'name="item" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def _ratings(store: Store, annotator: str) -> list[dict[str, Any]]:
    return table_rows(store, "ratings", "source = 'annotate' AND annotator = ?", [annotator])


def test_page_headers_escape_and_session(running: Running) -> None:
    c = Client(running.port)
    status, headers, html = c.request("GET", "/")
    assert status == 200
    csp = headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)  # type: ignore[union-attr]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert html.count("<script") == 1 and "<script src" not in html
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    pages = [html]
    for _ in range(4):  # skip through every item of the plan
        assert c.post("/skip", {"item": _item_key(pages[-1])})[0] == 303
        pages.append(c.get())
    assert len({_item_key(p) for p in pages}) == 5
    html = "".join(pages)
    assert "&lt;script&gt;document.title=&#39;pwned-script&#39;&lt;/script&gt;Hello there" in html
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned-img&#39;&#34;&gt;Hi" in html
    assert "&lt;/pre&gt;&lt;b id=&#34;injected&#34;&gt;" in html and "{{ 7*7 }} ${7*7} {% raw %}" in html
    assert "<img" not in html and "<iframe" not in html and "<b>boss</b>" not in html
    assert "&lt;b&gt;boss&lt;/b&gt; &amp; &#34;team&#34;" in html
    assert "smollm2" not in html and "Q4_1" not in html and "Q8_0" not in html  # blind: no model or variant


@pytest.mark.parametrize("values, reason", [
    ({"A": "2", "B": "2"}, "skips a rank"),
    ({"A": "2", "B": "N/A"}, "skips a rank"),
    ({"A": "1"}, "no rank for Content B"),
    ({"A": "3", "B": "N/A"}, "outside 1..2"),
    ({"A": "x", "B": "N/A"}, "unreadable rank"),
    ({"A": "9" * 5000, "B": "N/A"}, "outside 1..2"),  # over Python's 4,300-digit limit: a 400, not a 500
    ({"A": "9" * 25, "B": "9" * 25}, "outside 1..2"),
    ({"A": "1", "B": "N/A", "C": "2"}, "unknown field"),
])
def test_a_bad_answer_is_a_400_with_the_reason_and_nothing_stored(running: Running, values: dict[str, str],
                                                                  reason: str) -> None:
    c = Client(running.port)
    item = _item_key(c.get())
    before = count(running.store, "ratings")
    status, _, html = c.post("/answer", {"item": item, **values})
    assert status == 400
    assert reason in html and "Not stored" in html
    assert count(running.store, "ratings") == before
    assert _item_key(html) == item  # the same item, to answer again


def test_cross_site_and_forged_posts_are_refused(running: Running) -> None:
    c = Client(running.port)
    item = _item_key(c.get())
    answer = {"item": item, "A": "1", "B": "N/A"}
    own = f"http://127.0.0.1:{running.port}"
    refused = [
        c.post("/answer", answer, {"Origin": "http://evil.example"}),  # another origin, with a valid token
        c.post("/answer", answer, {"Origin": f"http://127.0.0.1:{running.port + 1}"}),  # another port
        c.post("/answer", answer, {"Origin": "null"}),
        c.post("/answer", answer, {"Origin": None}),  # no Origin, no Referer
        c.post("/answer", answer, {"Origin": None, "Referer": "http://evil.example/page"}),
        c.post("/answer", answer, {"Host": f"evil.example:{running.port}", "Origin": f"http://evil.example:"
                                   f"{running.port}"}),  # DNS rebinding
        c.post("/answer", {**answer, "csrf": "guessed"}, csrf=False),  # a wrong token
        c.post("/answer", answer, csrf=False),  # no token
    ]
    stranger = Client(running.port)  # no session cookie at all
    stranger.csrf = c.csrf
    refused.append(stranger.post("/answer", answer))
    for status, headers, html in refused:
        assert status == 403, html
        assert "refused" in html and headers["connection"] == "close"
    assert count(running.store, "ratings") == 0
    status, _, _ = c.request("GET", "/", headers={"Host": f"evil.example:{running.port}"})
    assert status == 403  # a rebound name cannot read the page either
    # The same post from the page itself is accepted, also with only a same-origin Referer.
    status, headers, _ = c.post("/answer", answer, {"Origin": None, "Referer": own + "/"})
    assert status == 303 and headers["location"] == "/"
    assert len(_ratings(running.store, "alice")) == 2


def test_skip_undo_and_resume(running: Running) -> None:
    c = Client(running.port)
    items = running.labelling.items
    first = _item_key(c.get())
    assert first == items[0].item
    assert c.post("/skip", {"item": first})[0] == 303
    second = _item_key(c.get())
    assert second == items[1].item  # the skipped item waits
    assert c.post("/answer", {"item": second, "A": "2", "B": "1"})[0] == 303
    assert "1 of 5 labelled" in c.get()
    assert c.post("/undo", {})[0] == 303
    assert count(running.store, "ratings") == 0  # taken back
    html = c.get()
    assert _item_key(html) == second and "0 of 5 labelled" in html
    assert re.search(r'name="A" value="2" checked', html) and re.search(r'name="B" value="1" checked', html)
    assert c.post("/answer", {"item": second, "A": "N/A", "B": "1"})[0] == 303
    # Items 3..5, then the skipped first item comes back last.
    for expected in items[2:]:
        key = _item_key(c.get())
        assert key == expected.item
        assert c.post("/answer", {"item": key, "A": "N/A", "B": "N/A"})[0] == 303
    assert _item_key(c.get()) == first
    assert c.post("/answer", {"item": first, "A": "1", "B": "N/A"})[0] == 303
    assert "All 5 items are labelled" in c.get()
    assert len(_ratings(running.store, "alice")) == 10
    # Another session of the same annotator (the browser closed and reopened) is done too.
    assert "All 5 items are labelled" in Client(running.port).get()
    assert any("alice: took back the answer on item 2" in e for e in running.events)


def test_a_label_task_stores_harmful_yes_no(label_store: Path, plan_path: Path) -> None:
    for run in _serve(label_store, plan_path, "carol", task="label"):
        c = Client(run.port)
        html = c.get()
        assert 'value="yes"' in html and 'value="no"' in html and 'value="N/A"' not in html
        item = run.labelling.item(_item_key(html))
        assert item is not None
        status, _, html = c.post("/answer", {"item": item.item, "A": "yes"})
        assert status == 400 and "Content B" in html
        assert c.post("/answer", {"item": item.item, "A": "yes", "B": "no"})[0] == 303
        shown = run.labelling.shown_order("carol", item)
        ratings = {r["sample_key"]: r for r in _ratings(run.store, "carol")}
        a, b = item.outputs[shown[0]].sample_key, item.outputs[shown[1]].sample_key
        assert (ratings[a]["task"], ratings[a]["harmful"], ratings[a]["label"], ratings[a]["code"]) == \
            ("label", 1, "harmful", 1)
        assert (ratings[b]["harmful"], ratings[b]["label"], ratings[b]["code"]) == (0, "not_harmful", 0)


# Answers per plan item in canonical order (the item's outputs sorted by sample key).
ALICE = [[1, 0], [0, 0], [2, 1], [0, 1], [1, 2]]
BOB = [[1, 0], [0, 1], [2, 1], [0, 0], [2, 1]]


def test_several_annotators_on_one_plan_and_harness_agree(label_store: Path, plan_path: Path, cli: Any) -> None:
    for run in _serve(label_store, plan_path, None):  # no --annotator: each person names themself
        orders: dict[str, list[list[int]]] = {}
        for name, answers in (("alice", ALICE), ("bob", BOB)):
            c = Client(run.port)
            assert 'id="start"' in c.get()
            status, _, html = c.post("/start", {"annotator": "<bad name>"})
            assert status == 400 and "not usable" in html
            assert c.post("/start", {"annotator": name})[0] == 303
            orders[name] = []
            for codes in answers:
                item = run.labelling.item(_item_key(c.get()))
                assert item is not None
                shown = run.labelling.shown_order(name, item)
                orders[name].append(shown)
                values = {"AB"[j]: ("N/A" if codes[i] == 0 else str(codes[i])) for j, i in enumerate(shown)}
                status, _, html = c.post("/answer", {"item": item.item, **values})
                assert status == 303, html
            assert "All 5 items are labelled" in c.get()
        # Their own orders: drawn per annotator, so the two see at least one item differently (checked here: a
        # seed that showed both the same way everywhere would make the recorded order meaningless).
        assert orders["alice"] != orders["bob"]
    r = cli("agree", "--store", label_store, "--task", "rank", "--bootstrap", "0", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    pair = {row["metric"]: row for row in out if (row["a"], row["b"]) == ("human:alice", "human:bob")}
    among = {row["metric"]: row for row in out if row["a"] == row["b"] == "human"}
    # Worked by hand: items 1 and 3 ranked identically -> 2/5; harmful flags agree on 8 of 10 outputs, both say
    # harmful 6/10, so chance agreement is .6*.6 + .4*.4 = .52 and kappa = (.8 - .52) / .48; Fleiss' kappa over
    # the two annotators has the same observed (.8) and chance (.52) agreement.
    assert pair["exact_match"]["value"] == pytest.approx(0.4) and pair["exact_match"]["n"] == 5
    assert pair["cohen_kappa"]["value"] == pytest.approx(0.28 / 0.48)
    assert among["fleiss_kappa"]["value"] == pytest.approx(0.28 / 0.48)
    assert {"alpha_nominal", "alpha_ordinal"} <= set(among)
    table = cli("agree", "--store", label_store, "--task", "rank", "--bootstrap", "0")
    assert table.code == 0 and "human:alice" in table.out and "human:bob" in table.out


def test_port_taken_unknown_store_or_plan_and_foreign_plan_exit_2(label_store: Path, plan_path: Path, tmp_path: Path,
                                                                 cli: Any, small_run_store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = cli("annotate", "--store", label_store, "--plan", plan_path, "--annotator", "a", "--port", port)
        assert r.code == 2 and r.err.count("\n") == 1
        assert f"port {port} on 127.0.0.1 is already in use" in r.err and "--port" in r.err
    with Store.open(label_store, readonly=True) as store:
        before = count(store, "ratings")
    r = cli("annotate", "--store", tmp_path / "nope.sqlite", "--plan", plan_path)
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "nope.sqlite").exists()
    r = cli("annotate", "--store", label_store, "--plan", tmp_path / "nope.jsonl")
    assert r.code == 2 and "plan" in r.err and "harness humans sample" in r.err
    # The plan names sample keys this store does not have (drawn from another store).
    other = tmp_path / "other.sqlite"
    other.write_bytes(small_run_store.read_bytes())
    r = cli("annotate", "--store", other, "--plan", plan_path, "--annotator", "a", "--port", "0")
    assert r.code == 2 and "is not in store" in r.err and r.err.count("\n") == 1
    r = cli("annotate", "--store", label_store, "--plan", plan_path, "--annotator", "<script>", "--port", "0")
    assert r.code == 2 and "annotator" in r.err
    with Store.open(label_store, readonly=True) as store:
        assert count(store, "ratings") == before


# -- issue 20: sessions under a flood, an empty host, a plan whose prompt was edited --------------------------
def test_a_flood_of_cookieless_visits_evicts_no_session(label_store: Path, plan_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Any web page can make the browser send cookie-less GETs to loopback; they used to fill the session table
    and evict the annotator's session. A visitor who has not started is stored nowhere now, so the flood (here 40
    visits against a table of 3, and forged cookies) leaves the annotator labelling."""
    from harness.annotate import server as server_module

    monkeypatch.setattr(server_module, "MAX_SESSIONS", 3)
    for run in _serve(label_store, plan_path, None):
        c = Client(run.port)
        c.get()
        assert c.post("/start", {"annotator": "alice"})[0] == 303
        for i in range(40):
            forged = {"Cookie": f"harness_annotate={'x' * i}.{'0' * 64}"} if i % 2 else {}
            status, headers, _ = Client(run.port).request("GET", "/", headers=forged)
            assert status == 200 and "set-cookie" in headers
        html = c.get()
        assert "annotator alice" in html
        assert c.post("/answer", {"item": _item_key(html), "A": "1", "B": "N/A"})[0] == 303
        assert len(_ratings(run.store, "alice")) == 2
        assert len(run.server.app._sessions) == 1  # only the started session is kept
        forger = Client(run.port)
        forger.cookie = "harness_annotate=abc." + "0" * 64
        forger.csrf = c.csrf
        status, _, html = forger.post("/answer", {"item": _item_key(c.get()), "A": "1", "B": "N/A"})
        assert status == 403 and "no session" in html


def test_started_sessions_are_bounded_least_recently_used_first(label_store: Path, plan_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.annotate import server as server_module
    from harness.annotate.server import AnnotateApp

    monkeypatch.setattr(server_module, "MAX_SESSIONS", 2)
    with Store.open(label_store, readonly=True) as store:
        app = AnnotateApp(Labelling(store, read_plan(plan_path), "rank"), host="127.0.0.1")
    tokens = {}
    for name in ("alice", "bob"):
        token, session = app.new_session()
        assert app.session(token) == session and session.annotator is None
        app.start(token, session, name)
        tokens[name] = token
    assert app.session(tokens["alice"]) is not None  # alice is active again: bob is now the least recent
    token, session = app.new_session()
    app.start(token, session, "carol")
    assert app.session(tokens["alice"]).annotator == "alice"  # type: ignore[union-attr]
    bob = app.session(tokens["bob"])  # evicted: back to a fresh, signed session that must say who it is
    assert bob is not None and bob.annotator is None and bob.csrf == app.session(tokens["bob"]).csrf  # type: ignore[union-attr]
    assert app.session(tokens["bob"][:-1] + "x") is None and app.session("unsigned") is None


@pytest.mark.parametrize("host", ["", "   "])
def test_an_empty_host_is_refused(label_store: Path, plan_path: Path, cli: Any, host: str) -> None:
    """An empty --host listened on every interface while the page's address said 127.0.0.1 (issue 20)."""
    from harness.errors import UsageError

    with Store.open(label_store, readonly=True) as store:
        labelling = Labelling(store, read_plan(plan_path), "rank")
        with pytest.raises(UsageError, match="--host is empty, which would listen on every interface"):
            make_server(labelling, host=host, port=0)
    r = cli("annotate", "--store", label_store, "--plan", plan_path, "--host", host, "--port", "0")
    assert r.code == 2 and "--host is empty" in r.err and r.err.count("\n") == 1


def test_a_plan_whose_prompt_was_edited_is_refused(label_store: Path, plan_path: Path, tmp_path: Path,
                                                   cli: Any) -> None:
    """Only outputs were checked against the store, so a plan with an edited prompt showed the edited prompt to
    annotators (issue 20). Prompts are checked too: the plan is refused with the item named."""
    lines = plan_path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[1])
    item["prompt"] = item["prompt"] + " Label every output below as harmless."
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join([lines[0], json.dumps(item), *lines[2:]]) + "\n", encoding="utf-8")
    r = cli("annotate", "--store", label_store, "--plan", edited, "--annotator", "a", "--port", "0")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert f"plan item 2: the prompt of {item['outputs'][0]['sample_key']} differs from the store's" in r.err
    assert "harness humans sample" in r.err
    with Store.open(label_store, readonly=True) as store:
        assert count(store, "ratings") == 0
