"""What an annotator has left to label in a plan, their answers, skips and undo: the page's logic, without HTTP.

State lives in the store: an item is labelled by an annotator when every one of its outputs has their
rating in this task from this tool (harness.humans.collect), so a closed browser or a restarted server
loses nothing and the next visit starts at the first unlabelled item. Skips are remembered per
annotator for the life of the server (a skipped item comes back after the others). Undo takes back
the annotator's most recent answer in this plan (deletes its ratings) and shows that item again with
the answer filled in.

Each annotator sees an item's outputs in their own order: a permutation drawn from a seeded RNG keyed by
(seed, annotator, item), the same on every visit, recorded with every rating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UsageError
from harness.humans.collect import Answer, AnswerError, letter, parse_labels, ratings_for, strict_ranking
from harness.humans.plan import PlanItem, check_against_store
from harness.judging.order import shown_orders
from harness.records import Generation, Rating

SOURCE = "annotate"


@dataclass
class AnnotatorState:
    skipped: list[str] = field(default_factory=list)  # item keys, in skip order
    served_at: dict[str, float] = field(default_factory=dict)  # item key -> when it was first shown
    prefill: dict[str, list[int]] = field(default_factory=dict)  # item key -> shown codes taken back by undo
    front: str | None = None  # an item taken back by undo: shown before the rest


@dataclass(frozen=True)
class Progress:
    labelled: int
    total: int


class Labelling:
    """One store, one plan, one task; thread-safe (the page serves several tabs and annotators at once)."""

    def __init__(self, store: Any, items: Sequence[PlanItem], task: str, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if task not in ("rank", "label"):
            raise UsageError(f"unknown --task {task!r}: use rank or label")
        if not items:
            raise UsageError("the plan has no items to label")
        self.store = store
        self.items = list(items)
        self.plan_id = self.items[0].plan
        self.task = task
        self.seed = seed
        self._clock = clock
        self._by_key = {it.item: it for it in self.items}
        keys = [o.sample_key for it in self.items for o in it.outputs]
        self.generations: dict[str, Generation] = {g.sample_key: g for g in store.generations(sample_keys=keys)}
        check_against_store(self.items, self.generations, store.path)
        self._lock = threading.RLock()
        self._states: dict[str, AnnotatorState] = {}
        self._keys: dict[str, dict[str, list[str]]] = {}

    # -- reading ------------------------------------------------------------------------------------
    def item(self, key: str) -> PlanItem | None:
        return self._by_key.get(key)

    def shown_order(self, annotator: str, item: PlanItem) -> list[int]:
        return shown_orders(item.k, "shuffle", self.seed, f"{annotator}\x1f{item.item}")[0]

    def _state(self, annotator: str) -> AnnotatorState:
        return self._states.setdefault(annotator, AnnotatorState())

    def _rating_keys(self, annotator: str) -> dict[str, list[str]]:
        """Per item, the keys its ratings by this annotator have (they do not depend on the answer)."""
        if annotator not in self._keys:
            self._keys[annotator] = {
                it.item: [r.rating_key for r in ratings_for(
                    Answer(it, annotator, self.task, [0] * it.n_contents, list(range(it.k)),
                           source=SOURCE), self.generations)]
                for it in self.items}
        return self._keys[annotator]

    def labelled(self, annotator: str) -> set[str]:
        """Item keys this annotator has labelled (in this task, with this page)."""
        with self._lock:
            wanted = self._rating_keys(annotator)
            stored = self.store.stored_rating_keys([k for ks in wanted.values() for k in ks])
            return {item for item, ks in wanted.items() if all(k in stored for k in ks)}

    def progress(self, annotator: str) -> Progress:
        return Progress(len(self.labelled(annotator)), len(self.items))

    def next_item(self, annotator: str) -> PlanItem | None:
        """The first unlabelled item in plan order, skipped ones last; None when all are labelled."""
        with self._lock:
            done = self.labelled(annotator)
            state = self._state(annotator)
            todo = [it for it in self.items if it.item not in done]
            if not todo:
                return None
            if state.front is not None and state.front in {it.item for it in todo}:
                return self._by_key[state.front]
            fresh = [it for it in todo if it.item not in state.skipped]
            if fresh:
                return fresh[0]
            by_skip = sorted(todo, key=lambda it: state.skipped.index(it.item))
            return by_skip[0]

    def serve(self, annotator: str, item: PlanItem) -> list[int]:
        """Mark the item as shown now (its time starts at the first showing); returns the shown order."""
        with self._lock:
            self._state(annotator).served_at.setdefault(item.item, self._clock())
        return self.shown_order(annotator, item)

    def prefill(self, annotator: str, item: PlanItem) -> list[int] | None:
        with self._lock:
            return self._state(annotator).prefill.get(item.item)

    # -- writing ------------------------------------------------------------------------------------
    def parse(self, item: PlanItem, values: Sequence[str]) -> list[int]:
        """Answers per shown content ('N/A' or a rank; yes/no) -> shown codes; AnswerError naming the problem."""
        n = item.n_contents
        if self.task == "rank":
            if len(values) != n or any(not str(v).strip() for v in values):
                missing = [i for i, v in enumerate(values) if not str(v).strip()]
                which = ", ".join(f"Content {letter(i)}" for i in missing) or "some outputs"
                raise AnswerError(f"no rank for {which}: give every output a rank or N/A")
            return strict_ranking(",".join(str(v).strip() for v in values), n)
        return parse_labels(values, n)

    def answer(self, annotator: str, item: PlanItem, values: Sequence[str]) -> list[Rating]:
        """Check and store one answer at once (replacing an earlier one); AnswerError, nothing stored."""
        shown_codes = self.parse(item, values)
        with self._lock:
            state = self._state(annotator)
            started = state.served_at.get(item.item)
            seconds = None if started is None else round(max(0.0, self._clock() - started), 3)
            answer = Answer(item, annotator, self.task, shown_codes, self.shown_order(annotator, item),
                            seconds=seconds, source=SOURCE, extra={"answered_at": time.time()})
            ratings = ratings_for(answer, self.generations)
            self.store.add(ratings, replace=True)
            state.served_at.pop(item.item, None)
            state.prefill.pop(item.item, None)
            if state.front == item.item:
                state.front = None
            if item.item in state.skipped:
                state.skipped.remove(item.item)
            return ratings

    def skip(self, annotator: str, item: PlanItem) -> None:
        with self._lock:
            state = self._state(annotator)
            if item.item in state.skipped:
                state.skipped.remove(item.item)
            state.skipped.append(item.item)

    def undo(self, annotator: str) -> PlanItem | None:
        """Take back this annotator's latest answer in this plan; returns its item (None: nothing to undo)."""
        with self._lock:
            mine = [r for r in self.store.ratings(source=SOURCE, task=self.task, annotator=annotator, rater="human")
                    if isinstance(r.extra, dict) and r.extra.get("plan") == self.plan_id
                    and r.extra.get("plan_item") in self._by_key]
            if not mine:
                return None
            last = max(mine, key=lambda r: (float(r.extra.get("answered_at") or 0) if r.extra else 0.0,
                                            r.created_at or 0.0))
            item = self._by_key[str(last.extra["plan_item"])] if last.extra else None
            if item is None:
                return None
            taken = [r for r in mine if r.extra and r.extra.get("plan_item") == item.item]
            shown = self.shown_order(annotator, item)
            codes_by_key = {r.sample_key: int(r.code or 0) for r in taken}
            canonical = [codes_by_key.get(o.sample_key, 0) for o in item.outputs]
            self.store.delete_ratings([r.rating_key for r in taken])
            state = self._state(annotator)
            state.prefill[item.item] = [canonical[group[0]] for group in item.contents(shown)]
            state.skipped = [k for k in state.skipped if k != item.item]
            state.front = item.item  # shown next: it is unlabelled again and goes before the rest
            return item
