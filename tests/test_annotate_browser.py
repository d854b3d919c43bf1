"""The labelling page in a real headless Chromium (selenium + Debian's chromium-driver), served by the real
`harness annotate` command: label three items, close the browser, reopen, resume at the fourth; hostile outputs
are shown as text; a cross-site form post is refused and stores nothing."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Any

from labelhelp import ADVERSARIAL, annotate_server, chromium_driver
from storehelp import table_rows

from harness.humans.plan import read_plan
from harness.store import Store


def _page_ratings(store_path: Path, annotator: str) -> list[dict[str, Any]]:
    with Store.open(store_path, readonly=True) as store:
        return table_rows(store, "ratings", "source = 'annotate' AND annotator = ?", [annotator])


def _wait(driver: Any, condition: Any, timeout_s: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s).until(condition)


def _shown(driver: Any) -> tuple[int, str, list[str]]:
    """(plan position, prompt, output texts as shown) of the item on the page."""
    from selenium.webdriver.common.by import By

    help_text = driver.find_element(By.CSS_SELECTOR, "p.help").text
    position = int(help_text.split("Item ", 1)[1].split(" ", 1)[0])
    prompt = driver.find_element(By.ID, "prompt").text
    outputs = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "pre.output-text")]
    return position, prompt, outputs


def _assert_inert(driver: Any) -> None:
    """Nothing from an output ran or became markup."""
    from selenium.webdriver.common.by import By

    assert not driver.title.startswith("pwned"), driver.title
    assert driver.find_elements(By.ID, "injected") == []
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert driver.find_elements(By.TAG_NAME, "iframe") == []
    assert driver.find_element(By.TAG_NAME, "main").is_displayed()  # the injected <style> did not apply


def _submit_and_wait(driver: Any, press: Any) -> None:
    from selenium.webdriver.common.by import By

    old = driver.find_element(By.ID, "answer")
    press()
    _wait(driver, lambda d: _stale(old))
    _wait(driver, lambda d: d.find_elements(By.ID, "progress"))


def _stale(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def _click(driver: Any, letter: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"input[name='{letter}'][value='{value}']").click()


def test_label_three_close_reopen_resume_at_the_fourth(label_store: Path, plan_path: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    items = read_plan(plan_path)
    assert len(items) == 5 and all(it.k == 2 for it in items)
    adversarial_prompts = {prompt for _, prompt, _, _ in ADVERSARIAL}
    hostile_outputs = {out for _, _, *outs in ADVERSARIAL for out in outs}
    assert adversarial_prompts <= {it.prompt for it in items}
    seen: dict[int, list[str]] = {}  # plan position -> output texts as shown
    answers: dict[int, list[str]] = {}  # plan position -> values as shown (A, B)

    with annotate_server("--store", label_store, "--plan", plan_path, "--annotator", "alice") as served:
        with chromium_driver(tmp_path / "profile-1") as driver:
            driver.get(served.url)
            for n in range(3):
                position, prompt, outputs = _shown(driver)
                assert position == n + 1  # plan order
                assert prompt == items[n].prompt
                assert driver.find_element(By.ID, "progress").text == f"{n} of 5 labelled"
                assert driver.find_element(By.ID, "who").text == "annotator alice"
                seen[position] = outputs
                if prompt in adversarial_prompts:
                    assert set(outputs) <= hostile_outputs and len(set(outputs)) == 2  # the markup, as text
                _assert_inert(driver)
                if n == 0:  # the keyboard alone: 1 for Content A, n(ot harmful) for B, Enter
                    body = driver.find_element(By.TAG_NAME, "body")
                    body.send_keys("1")
                    body.send_keys("n")
                    answers[position] = ["1", "N/A"]
                    _submit_and_wait(driver, lambda body=body: body.send_keys(Keys.ENTER))
                elif n == 1:
                    _click(driver, "A", "N/A")
                    _click(driver, "B", "N/A")
                    answers[position] = ["N/A", "N/A"]
                    _submit_and_wait(driver, lambda: driver.find_element(By.ID, "submit").click())
                else:  # a skipped rank first: refused on the page, nothing stored
                    _click(driver, "A", "2")
                    _click(driver, "B", "N/A")
                    _submit_and_wait(driver, lambda: driver.find_element(By.ID, "submit").click())
                    error = driver.find_element(By.ID, "error").text
                    assert "Not stored" in error and "skips a rank" in error
                    assert _shown(driver)[0] == position  # the same item again, the choices kept
                    assert driver.find_element(By.CSS_SELECTOR, "input[name='A'][value='2']").is_selected()
                    assert len(_page_ratings(label_store, "alice")) == 4
                    _click(driver, "B", "1")
                    answers[position] = ["2", "1"]
                    _submit_and_wait(driver, lambda: driver.find_element(By.ID, "submit").click())
            assert len(_page_ratings(label_store, "alice")) == 6  # three items, committed as answered
        # The browser is closed; a fresh one (no cookies) resumes at the fourth item.
        with chromium_driver(tmp_path / "profile-2") as driver:
            driver.get(served.url)
            position, prompt, outputs = _shown(driver)
            assert (position, prompt) == (4, items[3].prompt)
            assert driver.find_element(By.ID, "progress").text == "3 of 5 labelled"
            for n in (3, 4):
                position, prompt, outputs = _shown(driver)
                assert position == n + 1
                seen[position] = outputs
                _assert_inert(driver)
                _click(driver, "A", "N/A")
                _click(driver, "B", "1")
                answers[position] = ["N/A", "1"]
                old = driver.find_element(By.ID, "answer")
                driver.find_element(By.ID, "submit").click()
                _wait(driver, lambda d, old=old: _stale(old))
            _wait(driver, lambda d: d.find_elements(By.ID, "done"))
            assert "All 5 items are labelled" in driver.find_element(By.ID, "done").text
    assert served.proc.returncode == 0, "".join(served.lines)
    assert any("alice: labelled item 5 (5 of 5)" in line for line in served.lines)
    assert {it.prompt for it in items if it.position in seen} >= adversarial_prompts  # both hostile items shown

    # The store: one rating per output, with annotator, the order shown, the seconds spent and the plan.
    ratings = _page_ratings(label_store, "alice")
    assert len(ratings) == 10
    by_sample = {r["sample_key"]: r for r in ratings}
    for it in items:
        order = by_sample[it.outputs[0].sample_key]["extra"]["shown_order"]
        assert sorted(order) == [0, 1]
        # What the page showed at A, B is what the ratings say was shown there.
        assert seen[it.position] == [it.outputs[i].output for i in order]
        for j, canonical in enumerate(order):
            r = by_sample[it.outputs[canonical].sample_key]
            shown_value = answers[it.position][j]
            expected = 0 if shown_value == "N/A" else int(shown_value)
            assert (r["task"], r["code"], r["harmful"], r["valid"]) == ("rank", expected, int(expected > 0), True)
            assert r["rater"] == "human" and r["rater_kind"] == "human" and r["annotator"] == "alice"
            assert r["extra"]["plan"] == it.plan and r["extra"]["plan_item"] == it.item
            assert r["extra"]["shown_as"] == "AB"[j] and r["extra"]["shown_order"] == order
            assert isinstance(r["extra"]["seconds"], float) and 0 < r["extra"]["seconds"] < 600
            assert r["item_id"] == it.item_id and r["prompt_id"] == it.prompt_id


class _AttackPage(http.server.BaseHTTPRequestHandler):
    html = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_cross_site_post_is_refused(label_store: Path, plan_path: Path, tmp_path: Path) -> None:
    """Another site (another origin on this machine) auto-submits an answer form to the page's server while the
    annotator's browser holds a session: refused, nothing stored."""
    from selenium.webdriver.common.by import By

    items = read_plan(plan_path)
    with annotate_server("--store", label_store, "--plan", plan_path, "--annotator", "alice") as served:
        attack = (f'<!doctype html><form id="f" method="post" action="{served.url}answer">'
                  f'<input name="item" value="{items[0].item}"><input name="A" value="1">'
                  '<input name="B" value="N/A"><input name="csrf" value="guessed"></form>'
                  '<script>document.getElementById("f").submit()</script>').encode()
        handler = type("Attack", (_AttackPage,), {"html": attack})
        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            with chromium_driver(tmp_path / "profile") as driver:
                driver.get(served.url)  # the annotator has a session (the cookie is set)
                assert _shown(driver)[0] == 1
                driver.get(f"http://127.0.0.1:{evil.server_address[1]}/")
                _wait(driver, lambda d: d.current_url.startswith(served.url + "answer"))
                _wait(driver, lambda d: d.find_elements(By.ID, "message"))
                assert "refused" in driver.find_element(By.ID, "message").text
                time.sleep(0.2)
                driver.get(served.url)
                assert driver.find_element(By.ID, "progress").text == "0 of 5 labelled"
        finally:
            evil.shutdown()
            evil.server_close()
    assert _page_ratings(label_store, "alice") == []
