"""report.html in a real headless Chromium: plots render, adversarial outputs stay text, nothing runs.

The store is the real small run (smollm2 Q4_1 + Q8_0 x 5 prompts) plus one generation whose prompt,
output and judge explanation carry script payloads, rated harmful by a judge so that the page shows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from storehelp import add_row, add_rows, table_rows

from harness.keys import item_id as item_id_for_prompt
from harness.reporting import write_report
from harness.reporting._plots import BAR_COLOUR, FRONT_COLOUR
from harness.store import Store

TITLE = "harness report: harm and cost of small LLMs"
PAYLOAD_SCRIPT = "<script>document.title='pwned'</script>"
PAYLOAD_IMG = "<img src=x onerror=\"document.title='pwned'\">"
OUTPUT = f"Sure! {PAYLOAD_SCRIPT} and {PAYLOAD_IMG} done"
PROMPT = "Tell me <b>everything</b> & <script>document.title='pwned'</script>"
EXPLANATION = "harmful because <img src=x onerror=\"document.title='pwned'\">"


def parse_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag of the page with its attributes, as a browser's tokenizer sees them."""
    from html.parser import HTMLParser

    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Collector().feed(html)
    return tags


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: apt-get install -y chromium (scripts/test.sh does it)")
    return exe


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def add_adversarial_and_ratings(path: Path) -> None:
    """One adversarial generation (copy of a real harmful-prompt row) and judge ratings for every output."""
    with Store.open(path) as store:
        gens = table_rows(store, "generations", order="variant, prompt_id")
        base = next(g for g in gens if not g["benign"])
        evil = {**base, "sample_key": "adversarial-1", "prompt_id": "evil-001", "prompt": PROMPT, "output": OUTPUT,
                "prompt_sha256": "e" * 64}
        add_row(store, "generations", evil)
        ratings = []
        for g in [*gens, evil]:
            harmful = int(g["sample_key"] == "adversarial-1" or (g["variant"] == "Q4_1" and g["prompt_id"] == "off-001"))
            ratings.append({"rating_key": f"t:{g['sample_key']}", "source": "test", "rater": "smollm2-score",
                            "rater_kind": "judge", "task": "score", "item_id": item_id_for_prompt(g["prompt"]),
                            "prompt_id": g["prompt_id"], "category": g["category"], "model": g["model"],
                            "variant": g["variant"], "sample_key": g["sample_key"], "code": 3.0 * harmful,
                            "harmful": harmful, "valid": 1, "extra": {"explanation": EXPLANATION}})
        add_rows(store, "ratings", ratings)


@pytest.fixture
def report(small_store: Path, tmp_path: Path) -> Path:
    add_adversarial_and_ratings(small_store)
    with Store.open(small_store) as store:
        return write_report(store, tmp_path / "report")


def test_html_is_self_contained_and_escaped(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    # no external resources: every src is an inlined image, every href an in-page anchor
    tags = parse_tags(html)
    srcs = [v for _, attrs in tags for k, v in attrs if k == "src"]
    hrefs = [v for _, attrs in tags for k, v in attrs if k == "href"]
    assert srcs and all((v or "").startswith("data:image/svg+xml;base64,") for v in srcs), [v[:40] for v in srcs]
    assert hrefs and all((v or "").startswith("#") for v in hrefs), hrefs
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    # the only elements are the page's own: no script, iframe, object, embed, link or form
    assert {name for name, _ in tags}.isdisjoint({"script", "iframe", "object", "embed", "link", "form", "base"})
    assert all(not k.startswith("on") for _, attrs in tags for k, _ in attrs)  # no event handler attributes
    assert sum(1 for name, _ in tags if name == "img") == len(srcs)
    csp = [dict(attrs).get("content") or "" for name, attrs in tags
           if name == "meta" and dict(attrs).get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]
    # the payloads are present only escaped
    assert PAYLOAD_SCRIPT not in html and "<img src=x" not in html and "<b>everything</b>" not in html
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in html
    assert "&lt;b&gt;everything&lt;/b&gt; &amp;" in html
    assert html.count("<script") == 0


def test_chromium_renders_plots_and_runs_nothing(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    # 1. the DOM after load: title unchanged, no script or stray image element, payload visible as text
    dom = run_chromium(report, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"<title>{TITLE}</title>" in dom.stdout and "pwned</title>" not in dom.stdout
    assert "<script" not in dom.stdout
    img_tags = re.findall(r"<img\b[^>]*>", dom.stdout)
    assert img_tags and all('src="data:image/svg+xml;base64,' in t for t in img_tags)
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom.stdout
    assert "&lt;img src=x onerror=\"document.title='pwned'\"&gt;" in dom.stdout

    # 2. escaping alone holds: the same page without its CSP still runs nothing
    no_csp = tmp_path / "no-csp.html"
    no_csp.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.read_text()))
    assert "Content-Security-Policy" not in no_csp.read_text()
    dom2 = run_chromium(no_csp, tmp_path / "profile-nocsp", "--dump-dom")
    assert f"<title>{TITLE}</title>" in dom2.stdout and "<script" not in dom2.stdout

    # 3. the screenshot shows the plots: the harm bars (blue) and the Pareto front markers (red)
    shot = tmp_path / "shot.png"
    r = run_chromium(report, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,2600",
                     "--hide-scrollbars")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 2600)
    colours = image.getcolors(maxcolors=1 << 22)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank one

    def near(rgb: tuple[int, int, int], alpha: float) -> int:
        target = [round(alpha * c + (1 - alpha) * 255) for c in rgb]
        return sum(n for n, px in colours if all(abs(p - t) <= 12 for p, t in zip(px, target)))

    blue = tuple(int(BAR_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    red = tuple(int(FRONT_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    assert near(blue, 0.85) > 2000, "the harm bar chart is not visible"  # type: ignore[arg-type]
    assert near(red, 0.9) > 100, "no Pareto front marker is visible"  # type: ignore[arg-type]


def test_detector_catches_a_page_that_runs_the_payload(tmp_path: Path) -> None:
    """Control: the checks above would notice a payload that runs (unescaped, no CSP)."""
    page = tmp_path / "unsafe.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>{TITLE}</title></head><body>{OUTPUT}</body></html>")
    dom = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert "<title>pwned</title>" in dom.stdout


def test_page_sections_and_adversarial_example(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    for anchor in ("glance", "leaderboard", "pareto", "ladder", "judges", "study", "outputs", "definitions"):
        assert f'<section id="{anchor}">' in html
    # the adversarial output is one of the examples judged harmful, with the judge's explanation (escaped)
    assert "evil-001" in html
    assert "harmful because &lt;img src=x" in html
    # Q4_1 was rated harmful on off-001 and Q8_0 was not; the ladder's reference is the shipped Q4_1 (Q8_0 is
    # requantized from it, so it is the same lineage's highest precision): Q8_0's flip is "became harmless"
    assert "off-001 (offensive_content), seed 0: became harmless" in html


# -- fitting a laptop window, the outputs browser, the Pareto key ------------------------------------------------

LAPTOP_PX = 1400


def add_card(path: Path) -> None:
    """A judge card (so the page's widest table, the cards', is rendered) with long free text."""
    from harness.records import JudgeCard

    card = JudgeCard("card-1", "smollm2-score", "id-1", "score", "jsonl", "people-labelled-set-with-a-long-name",
                     "s" * 64, "human", 40, 40, 0, True, comparison="harm", sensitivity=0.8,
                     sensitivity_ci_low=0.6, sensitivity_ci_high=0.9, specificity=0.7, specificity_ci_low=0.5,
                     specificity_ci_high=0.85, tp=16, fn=4, fp=6, tn=14, position_bias={"position_following": 0.1},
                     cost={"seconds_per_judgment": 0.5, "cost_usd": 0.01},
                     note="a long note about how the card was made " * 4)
    with Store.open(path) as store:
        store.add([card])


def test_page_fits_a_laptop_window(small_store: Path, tmp_path: Path) -> None:
    """At 1400 px every table (the leaderboard's other columns and the flips opened too) and the page fit."""
    from labelhelp import chromium_driver

    add_adversarial_and_ratings(small_store)
    add_card(small_store)
    with Store.open(small_store) as store:
        page = write_report(store, tmp_path / "report")
    with chromium_driver(tmp_path / "profile") as driver:
        driver.set_window_size(LAPTOP_PX, 900)
        driver.get(page.resolve().as_uri())
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        width = driver.execute_script("return document.documentElement.clientWidth")
        tables = driver.execute_script("return [...document.querySelectorAll('table')].map(t => "
                                       "[t.closest('section').id, t.getBoundingClientRect().right])")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= LAPTOP_PX and len(tables) >= 6
    assert {s for s, _ in tables} >= {"leaderboard", "pareto", "ladder", "judges"}
    assert [(s, right) for s, right in tables if right > width] == []
    assert scroll <= width
    html = page.read_text(encoding="utf-8")
    leaderboard = html[html.index('<section id="leaderboard">'):html.index('<section id="pareto">')]
    assert leaderboard.count("<details>") == 1  # the other columns are behind one toggle per device


def test_outputs_browser_shows_every_output_escaped_and_filters(report: Path, tmp_path: Path) -> None:
    from labelhelp import chromium_driver
    from selenium.webdriver.common.by import By

    html = report.read_text(encoding="utf-8")
    browser = html[html.index('<section id="outputs">'):html.index('<section id="definitions">')]
    with Store.open(report.parent.parent / "store.sqlite") as store:
        gens = store.generations()
    assert len(gens) == 11 and browser.count('<div class="ob-item ') == len(gens)
    for g in gens:  # every output and prompt, escaped as the page escapes text
        assert html_escape(g.output) in browser and html_escape(g.prompt) in browser
    assert html_escape(EXPLANATION) in browser and PAYLOAD_SCRIPT not in browser
    assert browser.count("smollm2-score&#x27;s answer") == len(gens)
    with chromium_driver(tmp_path / "profile") as driver:
        driver.get(report.resolve().as_uri() + "#outputs")

        def shown() -> int:
            return sum(1 for e in driver.find_elements(By.CSS_SELECTOR, ".ob-item") if e.is_displayed())

        assert shown() == len(gens)
        filters = {row.find_element(By.TAG_NAME, "b").text: {e.text: e for e in row.find_elements(By.TAG_NAME, "label")}
                   for row in driver.find_elements(By.CSS_SELECTOR, ".ob-filters > div")}
        assert set(filters) == {"variant", "category", "prompt", "judge verdict"}  # no human label: no filter
        filters["judge verdict"]["harmful (2)"].click()  # the adversarial output and Q4_1 on off-001
        assert shown() == 2
        filters["variant"]["smollm2-135m-instruct:Q8_0 (5)"].click()  # and variant Q8_0: none of those
        assert shown() == 0
        filters["variant"]["all (11)"].click()
        assert shown() == 2


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def crowded(n: int, with_ram: bool = True) -> Any:
    """n variants, most of them on nearly the same point (the smear the page had)."""
    import pandas as pd

    return pd.DataFrame({
        "device": ["d"] * n, "model": ["m"] * n, "variant": [f"v{i}" for i in range(n)],
        "harm_rate": [0.33] * (n - 2) + [0.67, 0.67], "harm_ci_low": [0.01] * n, "harm_ci_high": [0.9] * n,
        "decode_tps": [28 + 0.1 * i for i in range(n - 1)] + [80.0],
        "peak_rss_bytes": [3.05e8 + 5e5 * i if with_ram else None for i in range(n)],
        "front_tps": [False] * (n - 1) + [True], "front_ram": [False] * (n - 1) + [with_ram],
        "harm_method": ["uncalibrated"] * n})


def test_pareto_point_numbers_never_overlap() -> None:
    import matplotlib

    from harness.reporting._plots import KEY_GID, pareto_figure

    with matplotlib.rc_context({"text.parse_math": False}):
        fig = pareto_figure("d", crowded(14), "judge")
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            keys = [t for t in ax.texts if t.get_gid() == KEY_GID]
            assert sorted(int(t.get_text()) for t in keys) == list(range(1, 15))
            boxes = [t.get_window_extent(renderer) for t in keys]
            assert not [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i < j and a.overlaps(b)]


def test_an_empty_pareto_panel_says_so_without_axes() -> None:
    import matplotlib

    from harness.reporting._plots import pareto_figure

    with matplotlib.rc_context({"text.parse_math": False}):
        speed, ram = pareto_figure("d", crowded(4, with_ram=False), "judge").axes
    assert speed.axison and not ram.axison
    assert any("nothing to plot" in t.get_text() for t in ram.texts)


def test_captions_name_the_intervals_shown() -> None:
    from harness.reporting._captions import harm_intervals

    assert harm_intervals(["uncalibrated"]) == "95% intervals: exact (Clopper-Pearson)"
    both = harm_intervals(["calibrated", "human-checked", None])
    assert "PPI++" in both and "Rogan-Gladen" in both and "Clopper" not in both and "Wilson" not in both


def test_report_captions_do_not_say_wilson_for_harm(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    board = html[html.index('<section id="leaderboard">'):html.index('<section id="pareto">')]
    assert "Clopper-Pearson" in board and "Wilson" not in board and "bootstrap" not in board
    definitions = html[html.index('<section id="definitions">'):]
    assert "Wilson" not in definitions and "exact (Clopper-Pearson) 95% interval" in definitions


def test_outputs_browser_caps_a_big_selection_and_folds_long_texts(small_store: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A big store shows the first outputs (judged harmful first) and says so; a long text shows its beginning
    with the whole of it behind a toggle; people's labels are a filter."""
    from harness.reporting import _outputs

    add_adversarial_and_ratings(small_store)
    with Store.open(small_store) as store:
        g = next(x for x in table_rows(store, "generations") if x["sample_key"] == "adversarial-1")
        add_row(store, "ratings", {"rating_key": "p:1", "source": "test", "rater": "ann", "rater_kind": "human",
                                   "task": "label", "item_id": item_id_for_prompt(g["prompt"]), "prompt_id": "evil-001",
                                   "category": g["category"], "model": g["model"], "variant": g["variant"],
                                   "sample_key": "adversarial-1", "code": 1.0, "harmful": 1, "valid": 1})
        monkeypatch.setattr(_outputs, "OUTPUTS_SHOWN", 3)
        monkeypatch.setattr(_outputs, "PREVIEW_CHARS", 20)
        html = write_report(store, tmp_path / "report").read_text(encoding="utf-8")
    browser = html[html.index('<section id="outputs">'):html.index('<section id="definitions">')]
    assert browser.count('<div class="ob-item ') == 3 and "The first 3 of the 11 output(s)" in browser
    assert "evil-001" in browser  # judged harmful: shown first
    assert "<b>human label</b>" in browser and "harmful (1)" in browser and "no label (2)" in browser
    assert f"the whole text ({len(OUTPUT)} characters)" in browser and html_escape(OUTPUT) in browser


def test_saved_plots_keep_labels_that_reach_past_the_figure() -> None:
    """A plot is saved around everything drawn (bbox 'tight'): a long label widens the image instead of being cut."""
    from harness.reporting._plots import _figure, to_svg

    fig = _figure(4, 3)
    fig.subplots().set_yticks([0, 1], ["short", "a very long model name that reaches far past the left edge"])
    fig.set_layout_engine("none")
    width_pt = float(re.search(r'<svg[^>]*width="([\d.]+)pt"', to_svg(fig)).group(1))  # type: ignore[union-attr]
    assert width_pt > 4 * 72
