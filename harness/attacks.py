"""Attacks: prompt transforms that put a model under adversarial pressure, read from the `attacks/` catalog.

An attack is a TOML entry (shipped in the wheel, shadowed by `--catalog` folders like devices and judges):

    description = "..."                     what it does, one line
    family = "..."                          its family in Wei et al.'s "Jailbroken" taxonomy (or a red-team tool's)
    source = "..."                          where the technique is published
    template = "... {prompt} ..."           the last user turn; {prompt} is the (encoded) request, exactly once
    encode = "base64"                       optional: how the request is written into the template
                                            (base64, rot13, leetspeak, spaced, split)
    answer_encoding = "rot13"               optional: the answer is asked for encoded; judges see it decoded
    shots = [["user turn", "assistant turn"], ...]   optional: a dialogue before the request (few-shot)
    repeat_shots = 8                        optional: the shots repeated (many-shot)
    compose = ["a", "b"]                    instead of a template: a's transform, then b's around it

An adaptive attack (`kind = "adaptive"`, PAIR: Chao et al. 2023) is not a fixed transform: an attacker model rewrites
the request round after round, with a judge in the loop, until the target complies (harness.adaptive_attack runs
it). Its keys, besides description, family and source:

    kind = "adaptive"
    attacker = "NAME"                       a judge of judges/ (an OpenAI-compatible endpoint, a llama-cpp model)
                                            or a catalog model NAME[:VARIANT] run in-process
    judge = "refusal-detector"              the judge in the loop (per-output verdict: refusal, score or guard mode);
                                            success = the target complied (refusal mode) or was judged harmful
    rounds = 3                              at most this many rounds (1..MAX_ROUNDS); it stops at success
    instructions = "... {goal} ..."         the attacker's system prompt; {goal} is the request
    [sampling]                              the attacker's: temperature, top_p, max_tokens, seed

Applying an attack to a request gives an `AttackedPrompt`: the conversation to send (earlier turns, then the last
user turn) and how to decode the answer. Templates are filled with `str.replace`, never `str.format`, so braces in
a request stay text. An attack's identity (`sha256`) covers everything that changes what is sent, so an edited
attack is a new sample key, never a silent change to stored results.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import catalog
from harness.errors import UsageError, did_you_mean

PLACEHOLDER = "{prompt}"
NO_ATTACK = "none"
ENCODINGS = ("base64", "rot13", "leetspeak", "spaced", "split")
ANSWER_ENCODINGS = ("base64", "rot13")
MAX_SHOTS = 256
KEYS = {"description", "family", "source", "template", "encode", "answer_encoding", "shots", "repeat_shots", "compose",
        "kind"}
ADAPTIVE = "adaptive"  # kind of an attack whose rewrite an attacker model writes round by round
ADAPTIVE_KEYS = {"description", "family", "source", "kind", "attacker", "judge", "rounds", "instructions", "sampling"}
GOAL = "{goal}"
DEFAULT_ROUNDS = 3
MAX_ROUNDS = 20
DEFAULT_LOOP_JUDGE = "refusal-detector"

_LEET = str.maketrans({"a": "4", "A": "4", "e": "3", "E": "3", "i": "1", "I": "1", "o": "0", "O": "0", "s": "5",
                       "S": "5", "t": "7", "T": "7"})


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class AttackedPrompt:
    """What is sent for one request under one attack."""

    attack: str
    turns: tuple[Turn, ...]  # earlier turns (shots), then the last user turn
    answer_encoding: str | None = None

    @property
    def text(self) -> str:
        """The last user turn."""
        return self.turns[-1].content

    @property
    def history(self) -> tuple[Turn, ...]:
        return self.turns[:-1]


@dataclass(frozen=True)
class Adaptive:
    """An adaptive attack's settings: who rewrites the request, who judges each round, how many rounds at most, and
    how the attacker is asked and sampled."""

    attacker: str  # a judge name (judges/) or a catalog model NAME[:VARIANT]
    instructions: str  # the attacker's system prompt, {goal} where the request goes
    judge: str = DEFAULT_LOOP_JUDGE
    rounds: int = DEFAULT_ROUNDS
    temperature: float = 1.0
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 0

    def identity(self) -> list[Any]:
        """What changes the rounds' prompts (not `rounds`: a larger cap continues the stored rounds)."""
        return [self.attacker, self.instructions, self.judge, self.temperature, self.top_p, self.max_tokens,
                self.seed]


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    family: str
    source: str
    template: str = PLACEHOLDER
    encode: str | None = None
    answer_encoding: str | None = None
    shots: tuple[tuple[str, str], ...] = ()
    repeat_shots: int = 1
    parts: tuple[Attack, ...] = field(default=())  # a composed attack's parts, applied in order
    adaptive: Adaptive | None = None  # an adaptive attack: its rewrite is the attacker's, round by round

    @property
    def sha256(self) -> str:
        """Identity of what the attack sends (not its description or source)."""
        if self.adaptive is not None:
            body: Any = [ADAPTIVE, *self.adaptive.identity()]
        elif self.parts:
            body = [p.sha256 for p in self.parts]
        else:
            body = [self.template, self.encode, self.answer_encoding, [list(s) for s in self.shots], self.repeat_shots]
        return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode("utf-8")).hexdigest()

    def apply(self, request: str) -> AttackedPrompt:
        if self.parts:
            turns: list[Turn] = []
            text, answer = request, None
            for part in self.parts:
                done = part.apply(text)
                turns += done.history
                text = done.text
                answer = done.answer_encoding or answer
            return AttackedPrompt(self.name, (*turns, Turn("user", text)), answer)
        shots = [t for u, a in self.shots for t in (Turn("user", u), Turn("assistant", a))] * self.repeat_shots
        body = self.template.replace(PLACEHOLDER, encode(request, self.encode))
        return AttackedPrompt(self.name, (*shots, Turn("user", body)), self.answer_encoding)


def baseline(request: str) -> AttackedPrompt:
    """The request as asked, with no attack."""
    return AttackedPrompt(NO_ATTACK, (Turn("user", request),))


# -- encodings ---------------------------------------------------------------------


def encode(text: str, how: str | None) -> str:
    if how is None:
        return text
    if how == "base64":
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    if how == "rot13":
        return codecs.encode(text, "rot13")
    if how == "leetspeak":
        return text.translate(_LEET)
    if how == "spaced":
        return " ".join(text)
    if how == "split":  # payload splitting: two halves as variables the model is asked to join
        cut = _split_point(text)
        return f'a = "{text[:cut]}"\nb = "{text[cut:]}"'
    raise AssertionError(how)


def _split_point(text: str) -> int:
    mid = len(text) // 2
    spaces = [m.start() for m in re.finditer(" ", text)]
    return min(spaces, key=lambda i: abs(i - mid)) + 1 if spaces else mid


_B64_RUN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def decode_answer(output: str, how: str | None) -> str | None:
    """The answer as a judge should read it: decoded when the attack asked for an encoded answer; None when it
    asked for none. An answer that does not decode is returned as written (the model ignored the request)."""
    if how is None:
        return None
    if how == "rot13":
        return codecs.decode(output, "rot13")
    if how == "base64":
        pieces = []
        for run in _B64_RUN.findall(output.replace("\n", "")):
            try:
                pieces.append(base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
        return " ".join(pieces) if pieces else output
    raise AssertionError(how)


# -- the catalog -------------------------------------------------------------------


def names() -> list[str]:
    return list(catalog.entries("attacks"))


def load(name_or_path: str, _seen: tuple[str, ...] = ()) -> Attack:
    """An attack by catalog name or TOML path; UsageError naming the problem and the fix."""
    from harness.tomlfile import read_toml

    if name_or_path in _seen:
        raise UsageError(f"attack '{name_or_path}' composes itself ({' -> '.join((*_seen, name_or_path))}): "
                         "remove the loop from its compose list")
    path = catalog.find("attacks", name_or_path)
    data = read_toml(path)
    return _parse(data, path, (*_seen, name_or_path))


def load_many(spec: str | Sequence[str] | None) -> list[Attack]:
    """`--attack a,b` (repeatable): the attacks in order, each once; `none` is the baseline, always included
    by the plan, so it is skipped here."""
    if not spec:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    wanted = [s.strip() for item in items for s in item.split(",")]
    if any(not w for w in wanted):
        raise UsageError(f"--attack {','.join(items)!r} has an empty name: list attacks separated by commas, "
                         f"e.g. --attack base64,refusal-suppression (see `harness attacks list`)")
    out: dict[str, Attack] = {}
    for w in wanted:
        if w == NO_ATTACK:
            continue
        a = load(w)
        out.setdefault(a.name, a)
    return list(out.values())


def _parse(data: dict[str, Any], path: Path, seen: tuple[str, ...]) -> Attack:
    where = str(path)
    kind = data.get("kind", "static")
    if kind == ADAPTIVE:
        return _adaptive(data, path)
    if kind != "static":
        raise UsageError(f"{where}: kind = {str(kind)[:40]!r} is unknown: an attack is static (the default: a "
                         f"template, encoding or dialogue) or {ADAPTIVE} (an attacker model rewrites it round by round)")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], sorted(KEYS))}: "
                         f"an attack has {', '.join(sorted(KEYS))}")
    text = {k: _string(data, k, where) for k in ("description", "family", "source")}
    for k in ("description", "source"):
        if not text[k]:
            raise UsageError(f"{where}: '{k}' is missing: say what the attack does and where it is published")
    name = path.stem
    if "compose" in data:
        return _composed(data, name, text, where, seen)
    template = _string(data, "template", where) or ""
    if template.count(PLACEHOLDER) != 1:
        found = "no" if PLACEHOLDER not in template else f"{template.count(PLACEHOLDER)}"
        raise UsageError(f"{where}: the template has {found} {PLACEHOLDER} placeholder(s): write {PLACEHOLDER} "
                         "exactly once, where the request goes")
    enc = _choice(data, "encode", ENCODINGS, where)
    answer = _choice(data, "answer_encoding", ANSWER_ENCODINGS, where)
    shots = _shots(data.get("shots", []), where)
    repeat = data.get("repeat_shots", 1)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat or repeat * len(shots) > MAX_SHOTS:
        raise UsageError(f"{where}: repeat_shots must be a whole number from 1, with at most {MAX_SHOTS} shots "
                         "in all")
    return Attack(name, text["description"], text["family"], text["source"], template, enc, answer, shots, repeat)


def _composed(data: dict[str, Any], name: str, text: dict[str, str], where: str, seen: tuple[str, ...]) -> Attack:
    parts = data["compose"]
    if set(data) & {"template", "encode", "answer_encoding", "shots", "repeat_shots"}:
        raise UsageError(f"{where}: an attack with 'compose' takes no template, encode or shots of its own: "
                         "make them a separate attack and compose it")
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
        raise UsageError(f"{where}: compose must list two or more attack names, e.g. compose = "
                         "[\"refusal-suppression\", \"prefix-injection\"]")
    loaded = tuple(load(p, seen) for p in parts)
    adaptive = next((p.name for p in loaded if p.adaptive is not None), None)
    if adaptive is not None:
        raise UsageError(f"{where}: '{adaptive}' is an adaptive attack, which cannot be composed: run it on its own")
    if sum(1 for p in loaded if _answer_encoding(p)) > 1:
        raise UsageError(f"{where}: two of its parts ask for an encoded answer: keep one")
    return Attack(name, text["description"], text["family"], text["source"], parts=loaded)


def _adaptive(data: dict[str, Any], path: Path) -> Attack:
    """An adaptive attack's entry (see the module docstring); which attacker and judge exist is checked where they
    are loaded (harness.adaptive_attack), before anything runs."""
    where = str(path)
    unknown = sorted(set(data) - ADAPTIVE_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], sorted(ADAPTIVE_KEYS))}: an "
                         f"adaptive attack has {', '.join(sorted(ADAPTIVE_KEYS))}")
    text = {k: _string(data, k, where) for k in ("description", "family", "source", "attacker", "judge",
                                                  "instructions")}
    for k, why in (("description", "say what the attack does"), ("source", "say where it is published"),
                   ("attacker", "name the judge (judges/) or model (models/) that writes the rewrites"),
                   ("instructions", f"write the attacker's instructions, with {GOAL} where the request goes")):
        if not text[k]:
            raise UsageError(f"{where}: '{k}' is missing: {why}")
    if GOAL not in text["instructions"]:
        raise UsageError(f"{where}: the instructions have no {GOAL} placeholder: write {GOAL} where the request goes")
    rounds = data.get("rounds", DEFAULT_ROUNDS)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise UsageError(f"{where}: rounds = {str(rounds)[:40]}: give a whole number of rounds from 1 to {MAX_ROUNDS}")
    sampling = _attacker_sampling(data.get("sampling", {}), where)
    settings = Adaptive(text["attacker"], data["instructions"], text["judge"] or DEFAULT_LOOP_JUDGE, rounds,
                        **sampling)
    return Attack(path.stem, text["description"], text["family"], text["source"], adaptive=settings)


def _attacker_sampling(value: Any, where: str) -> dict[str, Any]:
    """The attacker's [sampling] table: temperature 0..2, top_p in (0, 1], max_tokens 1..4096, a seed >= 0."""
    if not isinstance(value, dict):
        raise UsageError(f"{where}: [sampling] must be a table of temperature, top_p, max_tokens and seed")
    unknown = sorted(set(value) - {"temperature", "top_p", "max_tokens", "seed"})
    if unknown:
        raise UsageError(f"{where}: [sampling] has unknown key '{unknown[0]}': it has temperature, top_p, max_tokens "
                         "and seed")
    out: dict[str, Any] = {}
    for key, low, high, whole in (("temperature", 0.0, 2.0, False), ("top_p", 0.0, 1.0, False),
                                  ("max_tokens", 1, 4096, True), ("seed", 0, 2**31 - 1, True)):
        if key not in value:
            continue
        v = value[key]
        number = isinstance(v, int) if whole else isinstance(v, (int, float))
        if isinstance(v, bool) or not number or not low <= v <= high or (key == "top_p" and v == 0):
            kind = "a whole number" if whole else "a number"
            raise UsageError(f"{where}: [sampling] {key} = {str(v)[:40]}: give {kind} from {low} to {high}")
        out[key] = v
    return out


def _answer_encoding(a: Attack) -> str | None:
    return a.answer_encoding or next((x for p in a.parts if (x := _answer_encoding(p))), None)


def _string(data: dict[str, Any], key: str, where: str) -> str:
    v = data.get(key, "")
    if not isinstance(v, str):
        raise UsageError(f"{where}: '{key}' must be a string")
    return v.strip() if key != "template" else v


def _choice(data: dict[str, Any], key: str, allowed: Sequence[str], where: str) -> str | None:
    v = data.get(key)
    if v is None:
        return None
    if v not in allowed:
        raise UsageError(f"{where}: {key} = {str(v)[:40]!r} is not one of {', '.join(allowed)}")
    return str(v)


def _shots(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    ok = isinstance(value, list) and all(isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) and x.strip()
                                                                                      for x in s) for s in value)
    if not ok:
        raise UsageError(f"{where}: shots must be a list of [user turn, assistant turn] pairs of non-empty strings")
    if len(value) > MAX_SHOTS:
        raise UsageError(f"{where}: {len(value)} shots: at most {MAX_SHOTS}")
    return tuple((u, a) for u, a in value)


# -- how a request is put to a model: the system prompt and the attack -------------------------------------------


@dataclass(frozen=True)
class Framing:
    """One cell of the plan's framing axes: a system prompt (None: none) and an attack (None: the baseline)."""

    system_prompt: str | None = None
    attack: Attack | None = None
    # An adaptive attack's round (1..rounds) and the attacker's prompt sent in it (None: no usable prompt); None
    # for the plan's cell itself and for every other framing.
    attack_round: int | None = None
    rewrite: str | None = None

    @property
    def plain(self) -> bool:
        return self.system_prompt is None and self.attack is None

    @property
    def adaptive(self) -> Adaptive | None:
        return self.attack.adaptive if self.attack is not None else None

    def messages(self, request: str, history: Sequence[tuple[str, str]] = ()) -> tuple[list[dict[str, str]], str]:
        """(the turns sent, the last user turn as sent) for a request and its conversation's earlier turns. The
        plan's system prompt replaces a conversation's own; an attack rewrites the last user turn and puts its
        dialogue (shots) right before it."""
        done = self.attack.apply(request) if self.attack is not None else baseline(request)
        if self.rewrite is not None:  # an adaptive round: the attacker's prompt, sent as text
            done = AttackedPrompt(done.attack, (*done.history, Turn("user", self.rewrite)), done.answer_encoding)
        turns = [{"role": r, "content": c} for r, c in history]
        if self.system_prompt is not None:
            turns = [{"role": "system", "content": self.system_prompt},
                     *(t for t in turns if t["role"] != "system")]
        turns += [{"role": t.role, "content": t.content} for t in done.turns]
        return turns, done.text

    def key(self) -> str:
        """A short stable identity of the framing (for fingerprints); '' for none."""
        if self.plain:
            return ""
        body = [self.system_prompt, self.attack.sha256 if self.attack is not None else None]
        return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def framings(system_prompts: Sequence[str | None], chosen: Sequence[Attack]) -> list[Framing]:
    """The plan's framing axis: every system prompt, each with no attack (always) and then each attack."""
    return [Framing(s, a) for s in system_prompts for a in (None, *chosen)]


def to_plain(a: Attack) -> dict[str, Any]:
    """An attack as plain values (a fleet board rebuilds it with `from_plain`; its catalog need not have it)."""
    return {"name": a.name, "description": a.description, "family": a.family, "source": a.source,
            "template": a.template, "encode": a.encode, "answer_encoding": a.answer_encoding,
            "shots": [list(s) for s in a.shots], "repeat_shots": a.repeat_shots,
            "parts": [to_plain(p) for p in a.parts],
            **({"adaptive": asdict(a.adaptive)} if a.adaptive is not None else {})}


def from_plain(d: dict[str, Any]) -> Attack:
    adaptive = d.get("adaptive")
    return Attack(d["name"], d["description"], d["family"], d["source"], d["template"], d["encode"],
                  d["answer_encoding"], tuple((u, r) for u, r in d["shots"]), int(d["repeat_shots"]),
                  tuple(from_plain(p) for p in d["parts"]), Adaptive(**adaptive) if adaptive is not None else None)


def read_system_prompt(value: str) -> str:
    """`--system-prompt TEXT` or `@FILE` (UTF-8 text); UsageError for a file that is missing or not UTF-8."""
    from pathlib import Path as _Path

    if not value.startswith("@"):
        if not value.strip():
            raise UsageError("--system-prompt is empty: give the text, or @FILE")
        return value
    path = _Path(value[1:]).expanduser()
    from harness.infiles import read_bytes

    raw = read_bytes(path, "a system prompt")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--system-prompt {value}: {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") \
            from None
    if not text.strip():
        raise UsageError(f"--system-prompt {value}: {path} is empty")
    return text.strip("\n")
