"""The stores the adversarial cases run against: built with the typed store, as a run or an import would."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from harness.records import Generation, Rating, Run
from harness.store import Store

HOSTILE_MODEL = "m$\\bogus$"  # matplotlib mathtext
HOSTILE_DEVICE = "dev[/]"  # rich markup
HOSTILE_RATER = "[/]rater"
FORMULA = '=HYPERLINK("http://example.invalid","click")'
# terminal escapes (OSC 8 link, title, CSI clear, C1 CSI, bidi override) and live Markdown in names and outputs
ESCAPES_MODEL = "m\x1b]8;;http://evil.invalid\x07click\x1b]8;;\x07![x](http://evil.invalid/x.png)"
ESCAPES_DEVICE = "dev\x1b]0;owned\x07\x9b2J\u202e"
ESCAPES_RATER = "rater\x1b[8m[link](http://evil.invalid)"
ESCAPES_OUTPUT = "\x1b[2J\x1b[Hout \x90dcs\x9c"


def _gen(i: int, model: str, device: str, output: str, benign: bool = False) -> Generation:
    prompt = f"Prompt {i}?"
    return Generation(sample_key=hashlib.sha256(f"{model}|{device}|{i}".encode()).hexdigest()[:24], run_id="r1",
                      device=device, model=model, variant="Q4_1", backend="gguf", prompt_id=f"p{i}",
                      category="test", benign=benign, prompt=prompt,
                      prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(), output=output, n_output_tokens=5,
                      decode_tps=10.0 + i, ttft_s=0.1, latency_s=0.6, peak_rss_bytes=100_000_000)


# Kinds made by editing a plain store's file, as a hand or another program would.
EDITS = {
    "newer": ["PRAGMA user_version=99"],
    # a shard with a generation whose decode_tps is a word and one whose energy is infinite
    "badtypes": ["UPDATE generations SET decode_tps = 'fast' WHERE rowid = 2",
                 "UPDATE generations SET energy_j = 9e999 WHERE rowid = 3"],
    # a shard that measured the same samples again: another run id, other timings, the same outputs
    "remeasured": ["UPDATE runs SET run_id = 'r2'", "UPDATE generations SET run_id = 'r2', decode_tps = decode_tps * 2"],
    # a shard whose sample has another output: a real conflict
    "conflicting": ["UPDATE generations SET run_id = 'r2', output = 'something else' WHERE rowid = 2"],
}


def build(path: Path, kind: str) -> None:
    if kind == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO runs (name) VALUES ('not ours')")
        conn.commit()
        conn.close()
        return
    hostile, escapes = kind == "hostile", kind == "escapes"
    model, device = (HOSTILE_MODEL, HOSTILE_DEVICE) if hostile else (ESCAPES_MODEL, ESCAPES_DEVICE) if escapes else \
        ("m", "laptop-cpu")
    rater = HOSTILE_RATER if hostile else ESCAPES_RATER if escapes else "people"
    first = ESCAPES_OUTPUT if escapes else FORMULA
    gens = [_gen(i, model, device, first if i == 0 else f"Answer {i}", benign=i == 3) for i in range(4)]
    gens += [_gen(i, model + "-b", device, f"Other {i}", benign=i == 3) for i in range(4)]
    ratings = []
    for g in gens:
        if g.benign:
            continue
        for who, kind_ in ((rater, "human"), ("judge-x", "judge")):
            ratings.append(Rating(rating_key=hashlib.sha256(f"{who}|{g.sample_key}".encode()).hexdigest()[:24],
                                  source=f"import:{who}", rater=who, rater_kind=kind_, task="label",
                                  item_id=g.prompt_id or "", sample_key=g.sample_key, model=g.model, code=1,
                                  harmful=int(g.sample_key[0] in "01234567"), prompt_id=g.prompt_id))
    with Store.open(path) as st:
        st.add([Run(run_id="r1", started_at=1.0, status="finished", command="harness run")])
        st.add([*gens, *ratings])
    if kind in EDITS:
        conn = sqlite3.connect(path)
        for stmt in EDITS[kind]:
            conn.execute(stmt)
        conn.commit()
        conn.close()
    # checkpoint the WAL so the file alone is the store (its bytes are what the cases compare)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
