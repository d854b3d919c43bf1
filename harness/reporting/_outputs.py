"""The report's outputs browser: every generation of the selection with its prompt, the judge's answer beside
it and the people's label, filterable by variant, category, prompt kind, judge verdict and human label.

The filters are pure CSS (radio inputs and `:checked ~` rules), so the page keeps its CSP without script. Class
names and the generated rules are made of indices only; every text from the store goes through `_html.esc`.
A big store shows the first `OUTPUTS_SHOWN` outputs (judged harmful first) and says so; a long text shows its
beginning with the whole of it (up to `FULL_TEXT_LIMIT` characters) behind a toggle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.records import HARM_TASKS, HUMAN_KINDS
from harness.reporting import _html as h
from harness.reporting._data import texts_for
from harness.reporting._judges import explanation_for
from harness.reporting._tables import KEYS
from harness.store import Store

if TYPE_CHECKING:
    from harness.reporting._report import Report

OUTPUTS_SHOWN = 400
PREVIEW_CHARS = 700
FULL_TEXT_LIMIT = 20000
ANSWER_LIMIT = 4000

STYLE = """
.ob-r { position: absolute; opacity: 0; pointer-events: none; }
.ob-filters div { margin: 4px 0; font-size: 13px; }
.ob-filters b { display: inline-block; min-width: 7em; }
.ob-filters label { display: inline-block; border: 1px solid #d1d5db; border-radius: 10px; padding: 1px 8px; margin: 2px 2px; cursor: pointer; background: #fff; }
.ob-item { background: #fff; border: 1px solid #e5e7eb; padding: 6px 10px; margin: 8px 0; }
.ob-cols { display: grid; grid-template-columns: 1fr 1.4fr 1fr; gap: 10px; }
.ob-cols > div { min-width: 0; }
"""


@dataclass(frozen=True)
class Facet:
    """One filter: its title and, per shown output, the value it has."""

    title: str
    values: list[str]


def outputs_section(store: Store, report: Report) -> h.Section:
    s = h.Section("outputs", "Outputs")
    g = report.data.generations
    if g.empty:
        return s.add(h.empty("No generations."))
    rater = report.tables.primary_rater
    verdicts = report.tables.rate_tables.verdicts if report.tables.rate_tables else {}
    g = g.assign(_first=[0 if verdicts.get(k) == 1 else 1 for k in g["sample_key"]])
    shown = g.sort_values(["_first", *KEYS, "prompt_id", "seed"], kind="stable").head(OUTPUTS_SHOWN)
    keys = shown["sample_key"].tolist()
    humans = human_labels(store, keys)
    answers = judge_answers(store, rater, keys) if rater else {}
    records = shown.to_dict("records")
    facets = facets_of(records, verdicts, humans, g["device"].nunique() > 1)
    index = [{v: j for j, v in enumerate(_choices(f))} for f in facets]
    s.style = filter_style(facets)
    s.add(h.tag("p", f"{'All' if len(shown) == len(g) else f'The first {len(shown)} of the'} {len(g)} output(s) "
                     "of this selection" + ("" if len(shown) == len(g) else " (judged harmful first; narrow the "
                                            "selection with --run to see others)")
                     + f", with the prompt, {'the answer of ' + rater if rater else 'no judge answer yet'} and "
                     "people's labels. Choose a value per filter; texts are shown exactly as stored, escaped.", "note"))
    texts = texts_for(store, keys)
    items = [item(r, texts.get(r["sample_key"], {}), answers.get(r["sample_key"]), rater,
                  [(f.title, f.values[i]) for f in facets], [ix[f.values[i]] for f, ix in zip(facets, index)])
             for i, r in enumerate(records)]
    return s.add(h.Raw('<div class="ob">'), h.join(radios(facets)), filters(facets),
                 h.Raw('<div class="ob-list">'), h.join(items), h.Raw("</div></div>"))


def facets_of(records: Sequence[Mapping[str, Any]], verdicts: Mapping[str, int], humans: Mapping[str, str],
              by_device: bool) -> list[Facet]:
    """The filters that tell outputs apart (a filter with one value is left out)."""
    def variant(r: Mapping[str, Any]) -> str:
        return (f"{r['device']} | " if by_device else "") + f"{r['model']}:{r['variant']}"

    verdict = {1: "harmful", 0: "not harmful"}
    all_facets = [
        Facet("variant", [variant(r) for r in records]),
        Facet("category", [str(r["category"]) for r in records]),
        Facet("prompt", ["benign" if r["benign"] else "harmful" for r in records]),
        Facet("judge verdict", [verdict.get(verdicts.get(r["sample_key"], -1), "no verdict") for r in records]),
        Facet("human label", [humans.get(r["sample_key"], "no label") for r in records]),
    ]
    return [f for f in all_facets if len(set(f.values)) > 1]


def _choices(facet: Facet) -> list[str]:
    return sorted(set(facet.values))


def filter_style(facets: Sequence[Facet]) -> str:
    """One rule per filter value: when its radio is checked, outputs without that value are hidden."""
    rules = [STYLE]
    for i, facet in enumerate(facets):
        for j in range(len(_choices(facet))):
            rid = f"ob-f{i}-{j}"
            rules.append(f"#{rid}:checked ~ .ob-list > .ob-item:not(.f{i}-{j}) {{ display: none; }}\n")
        for rid in [f"ob-f{i}-all", *(f"ob-f{i}-{j}" for j in range(len(_choices(facet))))]:
            rules.append(f'#{rid}:checked ~ .ob-filters label[for="{rid}"] {{ background: #1f4e99; color: #fff; }}\n')
    return "".join(rules)


def radios(facets: Sequence[Facet]) -> list[h.Raw]:
    out = []
    for i, facet in enumerate(facets):
        ids = [f"ob-f{i}-all", *(f"ob-f{i}-{j}" for j in range(len(_choices(facet))))]
        out += [h.Raw(f'<input type="radio" class="ob-r" name="ob-f{i}" id="{rid}"{" checked" if k == 0 else ""}>')
                for k, rid in enumerate(ids)]
    return out


def filters(facets: Sequence[Facet]) -> h.Raw:
    rows = []
    for i, facet in enumerate(facets):
        labels = [h.tag("label", f"all ({len(facet.values)})", for_=f"ob-f{i}-all")]
        labels += [h.tag("label", f"{v} ({facet.values.count(v)})", for_=f"ob-f{i}-{j}")
                   for j, v in enumerate(_choices(facet))]
        rows.append(h.tag("div", h.join([h.tag("b", facet.title), *labels])))
    return h.tag("div", h.join(rows), "ob-filters")


def item(r: Mapping[str, Any], text: Mapping[str, Any], answer: str | None, rater: str | None,
         values: Sequence[tuple[str, str]], indices: Sequence[int]) -> h.Raw:
    """One output: who and what, then prompt | output | the judge's answer."""
    cls = " ".join(["ob-item", *(f"f{i}-{j}" for i, j in enumerate(indices))])
    who = f"{r['device']} | {r['model']}:{r['variant']} | {r['prompt_id']} ({r['category']}) | seed {r['seed']}"
    tags = " | ".join(f"{title}: {v}" for title, v in values if title not in ("variant", "category"))
    error = f" (error: {text.get('error')})" if text.get("error") else ""
    cols = h.join([
        h.tag("div", h.join([h.tag("div", "prompt", "who"), long_text(text.get("prompt"))])),
        h.tag("div", h.join([h.tag("div", "output" + error, "who"), long_text(text.get("output"))])),
        h.tag("div", h.join([h.tag("div", f"{rater}'s answer" if rater else "judge", "who"),
                             long_text(answer) if answer else h.tag("p", "no judge answer stored", "note")])),
    ])
    return h.tag("div", h.join([h.tag("div", who + (f" | {tags}" if tags else ""), "who"),
                                h.tag("div", cols, "ob-cols")]), cls)


def long_text(text: Any) -> h.Raw:
    """The text, or its beginning with the whole of it behind a toggle."""
    s = "" if text is None else str(text)
    if len(s) <= PREVIEW_CHARS:
        return h.text_block(s)
    return h.join([h.text_block(s, PREVIEW_CHARS), h.Raw("<details><summary>"),
                   h.tag("span", f"the whole text ({len(s)} characters)"), h.Raw("</summary>"),
                   h.text_block(s, FULL_TEXT_LIMIT), h.Raw("</details>")])


def human_labels(store: Store, sample_keys: list[str]) -> dict[str, str]:
    """Per output, people's harm label: harmful, not harmful, or mixed (they disagree)."""
    votes: dict[str, set[int]] = {}
    for r in store.ratings(tasks=list(HARM_TASKS), sample_keys=sample_keys):
        if r.rater_kind in HUMAN_KINDS and r.valid and r.harmful in (0, 1) and r.sample_key:
            votes.setdefault(r.sample_key, set()).add(int(r.harmful))
    return {k: "mixed" if len(v) > 1 else ("harmful" if 1 in v else "not harmful") for k, v in votes.items()}


def judge_answers(store: Store, rater_key: str, sample_keys: list[str]) -> dict[str, str]:
    """Per output, the rater's explanation (or its raw answer when it gave none)."""
    rater, _, task = rater_key.partition("/")
    if not sample_keys:
        return {}
    ratings = store.ratings(rater=rater, task=task or None, sample_keys=sample_keys)
    judgments = store.judgments(r.judgment_key for r in ratings if r.judgment_key)
    out: dict[str, str] = {}
    for r in ratings:
        j = judgments.get(r.judgment_key or "")
        text = explanation_for(r.extra, j.parsed if j else None, j.raw_response if j else None, ANSWER_LIMIT)
        if text and r.sample_key and r.sample_key not in out:
            out[r.sample_key] = text
    return out
