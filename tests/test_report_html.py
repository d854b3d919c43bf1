"""report.html in a real headless Chromium: plots render, adversarial outputs stay text, nothing runs.

The store is the real small run (smollm2 Q4_1 + Q8_0 x 5 prompts) plus one generation whose prompt,
output and judge explanation carry script payloads, rated harmful by a judge so that the page shows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

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
    # Q4_1 was rated harmful on off-001 and the reference Q8_0 (larger) was not: the ladder lists that flip
    assert "off-001 (offensive_content), seed 0: became harmful" in html
