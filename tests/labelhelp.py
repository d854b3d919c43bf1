"""Helpers for the labelling tests: a store with adversarial outputs beside a real run's, a headless Chromium
driven by selenium, and `harness annotate` as a real subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from storehelp import add_rows, table_rows

from harness import keys
from harness.store import Store

REPO = Path(__file__).resolve().parent.parent

# Outputs a page must show as text: if any of them ran, the document title or the DOM would change.
SCRIPT_OUTPUT = "<script>document.title='pwned-script'</script>Hello there"
ONERROR_OUTPUT = "<img src=x onerror=\"document.title='pwned-img'\">Hi"
BREAKOUT_OUTPUT = "</pre><b id=\"injected\">bold</b><style>body{display:none}</style>"
TEMPLATE_OUTPUT = "=HYPERLINK(\"http://evil.example\",\"x\") {{ 7*7 }} ${7*7} {% raw %}"  # a spreadsheet formula
ADVERSARIAL = [
    ("adv-001", "Write a card for my <b>boss</b> & \"team\"", SCRIPT_OUTPUT, ONERROR_OUTPUT),
    ("adv-002", "Reply to: <iframe src=//evil.example></iframe>", BREAKOUT_OUTPUT, TEMPLATE_OUTPUT),
]


def add_adversarial(path: Path) -> list[str]:
    """Two harmful-prompt items whose outputs (one per variant of the real run) are hostile markup; returns
    their sample keys."""
    with Store.open(path) as store:
        gens = table_rows(store, "generations", order="variant, prompt_id")
        q4 = next(g for g in gens if g["variant"] == "Q4_1" and not g["benign"])
        q8 = next(g for g in gens if g["variant"] == "Q8_0" and not g["benign"])
        rows, made = [], []
        for pid, prompt, out_q4, out_q8 in ADVERSARIAL:
            for base, out in ((q4, out_q4), (q8, out_q8)):
                sk = keys.text_sha256(f"{pid}-{base['variant']}")[:32]  # opaque, as real sample keys are
                rows.append({**base, "sample_key": sk, "prompt_id": pid, "prompt": prompt, "output": out,
                             "prompt_sha256": keys.text_sha256(prompt), "category": "adversarial_markup",
                             "run_id": "test:adversarial"})
                made.append(sk)
        add_rows(store, "generations", rows)
    return made


# -- the browser ---------------------------------------------------------------------------------------
def chrome_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("Chromium and its driver are not installed: apt-get install -y chromium chromium-driver "
                    "(scripts/test.sh does it)")
    return browser, driver


@contextmanager
def chromium_driver(profile: Path) -> Iterator[Any]:
    """A headless Chromium under selenium with its own profile (a fresh browser: no cookies)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chrome_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1200,1600"):
        opts.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# -- `harness annotate` as a subprocess ----------------------------------------------------------------
@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    lines: list[str]


@contextmanager
def annotate_server(*args: str, timeout_s: float = 60) -> Iterator[Served]:
    """Run `harness annotate ARGS --port 0`, wait for its URL, stop it with SIGINT by PID at the end."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "annotate", *args, "--port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while url is None:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise AssertionError(f"harness annotate exited {proc.returncode}: {''.join(lines)}")
        lines.append(line)
        m = re.search(r"at (http://\S+/)", line)
        if m:
            url = m.group(1)
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"harness annotate printed no URL in {timeout_s}s: {''.join(lines)}")
    served = Served(proc, url, lines)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)  # a loaded host can take long to unwind the server
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        rest = proc.stdout.read() if proc.stdout else ""
        lines.extend(rest.splitlines(keepends=True))
        proc.stdout.close() if proc.stdout else None


@pytest.fixture
def label_store(small_store: Path) -> Path:
    """A private copy of the small run's store with the adversarial outputs added."""
    add_adversarial(small_store)
    return small_store


@pytest.fixture
def plan_path(label_store: Path, tmp_path: Path, cli: Any) -> Path:
    """A labelling plan of 5 outputs per variant of `label_store`."""
    out = tmp_path / "plan.jsonl"
    r = cli("humans", "sample", "--store", label_store, "--per-variant", "5", "--out", out)
    assert r.code == 0, r.err
    return out
