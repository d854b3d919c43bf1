"""Every identity scheme of the store, in one place: same inputs, same key, across versions.

Keys are what make resume and caching free: a sample, a judgment or a rating whose key is
already stored is not made again. Their values must never change for the same inputs, or
stores written by an earlier version stop resuming (tests/test_keys.py pins them).

  item_id        the unit rated together: one prompt text, normalized, wherever it came from
  sample_key     one generation by our engine: model file, variant, backend and its version,
                 device profile, sampling settings, prompt id and text (an adaptive attack's round:
                 the attack and the round instead of the attacker's text)
  external_sample_key   a response produced elsewhere (an imported release): model, variant,
                 item and response text, so the same response imported twice is one row
  group_key      the outputs a rank or pairwise judge sees together: prompt, device, seed,
                 temperature and max tokens
  request_key    what a judge is asked: its identity, rubric and version, mode, prompt (and the
                 conversation's earlier turns, when it has some) and the outputs in shown order
                 (keys the on-disk answer cache)
  judgment_key   a judge's name plus the request key (keys the judgments table)
  judge_rating_key / import_rating_key   one rating per (rater, task, item, output): from our
                 judges, and from imported files (where it came from and what it rates, never
                 its value, so re-importing writes nothing); people's labels collected by
                 `harness annotate`, Label Studio and sheets use import_rating_key too
  plan_item_key / plan_id   a labelling plan's items (the outputs shown together) and the plan
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any


def text_sha256(text: str) -> str:
    """sha256 of a text's UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha_json(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# -- items ------------------------------------------------------------------------------------------
def normalize_prompt(text: str) -> str:
    """Unicode NFC, case-folded, whitespace collapsed, outer quotes and spaces stripped."""
    t = unicodedata.normalize("NFC", text).casefold()
    return re.sub(r"\s+", " ", t).strip().strip("\"'").strip()


def item_id(prompt: str) -> str:
    """The item a prompt text belongs to; humans, imported judges and our judges meet on it."""
    return "p:" + hashlib.sha256(normalize_prompt(prompt).encode("utf-8")).hexdigest()[:16]


# -- generations ------------------------------------------------------------------------------------
def input_sha256(messages: Sequence[Mapping[str, str]]) -> str:
    """What a model is sent: a lone user turn hashes as its text (so a plain prompt's key is its text's), a
    conversation (a system prompt, earlier turns, an attack's dialogue) as the whole list of turns."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return text_sha256(messages[0]["content"])
    return _sha_json([[m["role"], m["content"]] for m in messages])


def sample_key(*, model: str, variant: str, backend: str, model_sha256: str, backend_version: str, device: str,
               sampling: Mapping[str, Any], prompt_id: str, prompt_sha256: str,
               adaptive_round: tuple[str, int] | None = None) -> str:
    """One generation of our engine. `adaptive_round`: (the adaptive attack's sha256, the round) of a round of an
    adaptive attack, whose prompt the attacker writes (so it is known only once written); left out of the key
    otherwise, so every other key is what it always was."""
    ident: dict[str, Any] = {
        "model_sha256": model_sha256,
        "model": model,
        "variant": variant,
        "backend": backend,
        "backend_version": backend_version,
        "device": device,
        "sampling": dict(sampling),
        "prompt_id": prompt_id,
        "prompt_sha256": prompt_sha256,
    }
    if adaptive_round is not None:
        ident["adaptive_attack"] = {"sha256": adaptive_round[0], "round": adaptive_round[1]}
    return text_sha256(json.dumps(ident, sort_keys=True))[:32]


def _digest(*parts: object, length: int = 32) -> str:
    blob = json.dumps([None if p is None else str(p) for p in parts], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def external_sample_key(model: str, variant: str, item: str, output: str) -> str:
    """A response produced elsewhere and imported."""
    return "ext:" + _digest(model, variant, item, output, length=24)


def group_key(prompt_sha256: str | None, prompt: str | None, device: str | None, seed: int | None,
              temperature: float | None, max_tokens: int | None, item: str | None = None) -> str:
    """The outputs shown together to a rank or pairwise judge (`item`: an item other than the prompt's own)."""
    prompt_hash = prompt_sha256 or hashlib.sha256(str(prompt or "").encode("utf-8")).hexdigest()
    parts: list[object] = [prompt_hash, device, seed, temperature, max_tokens]
    if item is not None:
        parts.append(item)
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()[:16]


# -- judgments and ratings --------------------------------------------------------------------------
def request_key(identity: Mapping[str, Any], rubric: str | None, rubric_version: str | None, mode: str, prompt: str,
                shown_outputs: Sequence[str], history: Sequence[tuple[str, str]] = ()) -> str:
    """Two requests with the same key get the same answer. `history`, the conversation's (role, text) turns
    before the prompt, enters only when there is one, so a single-turn request keeps its key."""
    body: dict[str, Any] = {"judge": dict(identity), "rubric": rubric, "rubric_version": rubric_version, "mode": mode,
                            "prompt": prompt, "outputs": list(shown_outputs)}
    if history:
        body["history"] = [[role, text] for role, text in history]
    return _sha_json(body)[:32]


def judgment_key(judge_name: str, req_key: str) -> str:
    return _sha_json([judge_name, req_key])[:32]


def judge_rating_key(rater: str, task: str, item: str, sample_key: str) -> str:
    """One rating per (judge, task, output); re-judging replaces it under the same key."""
    return _sha_json(["judge", rater, task, item, sample_key])[:32]


def card_key(judge: str, identity: str, mode: str, set_digest: str, limit: int | None) -> str:
    """One judge card per (judge configuration, mode, set contents, items limit): recalibrating replaces it."""
    return "card:" + _sha_json([judge, identity, mode, set_digest, limit])[:24]


def import_rating_key(source: str, rater: str, annotator: str | None, task: str, item: str, model: str | None,
                      variant: str | None, sample_key: str | None) -> str:
    """One imported rating: where it came from and what it rates."""
    return "r:" + _digest(source, rater, annotator, task, item, model, variant, sample_key)


# -- labelling plans --------------------------------------------------------------------------------
def plan_item_key(sample_keys: Sequence[str]) -> str:
    """One item of a labelling plan: the outputs shown together, whatever their order."""
    return "i:" + _digest(*sorted(sample_keys), length=20)


def plan_id(strategy: str, seed: int, item_keys: Sequence[str]) -> str:
    """A labelling plan: how it was drawn and the items it holds, in order (the same draw, the same id)."""
    return "plan:" + _digest(strategy, seed, *item_keys, length=16)
