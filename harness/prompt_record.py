"""The prompt record (`Prompt`: a request, or the last user turn of a conversation, with its set's fields), the
checks of a conversation's turns, and the decoding of a prompt file's text. A leaf of the catalogs layer: the
readers of prompt sets (`prompts`, `prompt_templates`, `prompt_layouts`) all build on it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import keys
from harness.errors import UsageError


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str
    benign: bool
    source: str
    prompt_set: str = ""
    # Group-templated sets (harness.prompt_templates): the template, the axis and the group that filled it.
    template_id: str | None = None
    axis: str | None = None
    group: str | None = None
    # A published set's own ids and fields (harness.prompt_layouts): kept, never part of any key.
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    # A conversation's turns before the last user turn (`text`): (role, content), a system turn only first.
    history: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:  # given as lists (JSON, a fleet board's plan): kept as tuples, hashable
        object.__setattr__(self, "history", tuple((str(r), str(c)) for r, c in self.history))

    @property
    def sha256(self) -> str:
        return keys.input_sha256(self.messages)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The whole conversation: the history, then the prompt as the last user turn."""
        return [*({"role": r, "content": c} for r, c in self.history), {"role": "user", "content": self.text}]

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("prompt_set")
        for k in ("template_id", "axis", "group"):
            if d[k] is None:
                d.pop(k)
        if not d["metadata"]:
            d.pop("metadata")
        history = d.pop("history")
        if history:
            d.pop("text")
            d["messages"] = self.messages
        return d


ICONV_NAMES = {"cp1252": "WINDOWS-1252", "mac_roman": "MACINTOSH", "latin-1": "LATIN1", "utf-16": "UTF-16",
               "utf-32": "UTF-32"}


def decode_text(raw: bytes, where: str) -> str:
    """A prompt file's text, which must be UTF-8 (a BOM is dropped): prompts become sample keys, so their text is
    never guessed. Anything else is refused with the conversion that fits what the bytes look like."""
    from harness.encodings import decode_bytes

    if b"\x00" in raw:
        decode_bytes(raw, where, "prompts (CSV or JSONL)")  # raises: UTF-16 (convert it) or binary
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_at = exc.start
    d = decode_bytes(raw, where, "prompts (CSV or JSONL)")
    if d.encoding in ("utf-16", "utf-32"):
        raise UsageError(f"{where} is {d.encoding.upper()}, not UTF-8: convert it, e.g. iconv -f {d.encoding.upper()} "
                         f"-t UTF-8 {where} > converted{Path(where).suffix or '.txt'}")
    if d.encoding.startswith("utf-8"):
        raise UsageError(f"{where} is not valid UTF-8 ({d.replaced} broken sequence(s), the first at byte {bad_at}): "
                         f"fix them, or drop them with iconv -f UTF-8 -t UTF-8 -c {where} > fixed.jsonl")
    name = ICONV_NAMES.get(d.encoding, d.encoding.upper())
    raise UsageError(f"{where} is not UTF-8 (bad byte at offset {bad_at}; it looks like {d.encoding}): re-save it as "
                     f"UTF-8, e.g. iconv -f {name} -t UTF-8 {where} > converted{Path(where).suffix or '.txt'}")


ROLES = ("system", "user", "assistant")


def conversation(messages: Any, where: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(history, last user turn) of a conversation given as [{"role", "content"}, ...]; UsageError naming the turn
    that is wrong: an unknown role, a system turn after the first, empty text, or a last turn not the user's."""
    if not isinstance(messages, list) or not messages:
        raise UsageError(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} turns")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UsageError(f"{where}: turn {i} must be an object with string 'role' and 'content'")
        role = m["role"].strip().lower()
        if role not in ROLES:
            raise UsageError(f"{where}: turn {i} has role {m['role'][:30]!r}: roles are {', '.join(ROLES)}")
        if role == "system" and i > 1:
            raise UsageError(f"{where}: turn {i} is a system turn: a system prompt can only be the first turn")
        if not m["content"].strip():
            raise UsageError(f"{where}: turn {i} ({role}) is empty: give every turn its text")
        turns.append((role, m["content"]))
    if turns[-1][0] != "user":
        article = "an" if turns[-1][0] == "assistant" else "a"
        raise UsageError(f"{where}: the conversation ends with {article} {turns[-1][0]} turn: it must end with the user turn "
                         "the model answers")
    return tuple(turns[:-1]), turns[-1][1]




_TRANSCRIPT_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def transcript_turns(transcript: str) -> list[dict[str, str]] | None:
    """An HH-RLHF-style transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as its turns (Human is the user);
    None for text that is not one."""
    parts = _TRANSCRIPT_TURN.split(transcript)
    if len(parts) < 3 or parts[0].strip():
        return None
    return [{"role": "user" if who == "Human" else "assistant", "content": text.strip()}
            for who, text in zip(parts[1::2], parts[2::2])]


def dialogue_before_last_user_turn(transcript: str, where: str) -> list[dict[str, str]]:
    """A transcript cut after its last human turn: the conversation a model is asked to continue (HH-RLHF's
    prompts as conversations). UsageError when it is no transcript or has no human turn."""
    turns = transcript_turns(transcript)
    users = [i for i, t in enumerate(turns or []) if t["role"] == "user" and t["content"]]
    if turns is None or not users:
        raise UsageError(f"{where}: not a transcript of '\\n\\nHuman:' / '\\n\\nAssistant:' turns with a human turn")
    return turns[: users[-1] + 1]
