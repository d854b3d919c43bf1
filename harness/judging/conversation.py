"""The conversation a judge sees: a generation's own earlier turns, before the request it answered.

A generation from a conversation prompt set (`messages` rows) stores the turns sent before its last user turn
(`Generation.history`). Judges read them as (role, text) pairs: rubrics get them as `history`, the guard mode
puts them before the request and the answer in its moderation conversation. Two things stored beside them are
left out, on purpose:

- the system prompt (`Generation.system_prompt`, a conversation's own or the plan's `--system-prompt`): it is the
  deployer's instruction, not the user's conversation, and Llama Guard classifies only user and assistant turns;
- an attack's dialogue (few-shot / many-shot compliance shots): it is attack content the harness fabricated, not
  the user's conversation. A judge rates an attacked answer against the request (`Generation.prompt`, the original
  behaviour) and reads the decoded answer, as for every attack; only the prompt set's own turns are shown. The
  shots are the stored turns' tail, recognised by re-applying the attack from the catalog (its sha256 must be the
  generation's `attack_sha256`, and its dialogue must be that tail). When they cannot be recognised (the attack is
  no longer in the catalog, was edited, or is not a catalog attack) no history is shown, rather than attack text
  passed off as the user's.

Roles other than user and assistant, and turns that are not text, are not judged turns: they are left out.
"""

from __future__ import annotations

from typing import Any

from harness.errors import UsageError
from harness.records import Generation

Turn = tuple[str, str]  # (role, text)
TURN_ROLES = ("user", "assistant")


def stored_turns(history: Any) -> tuple[Turn, ...]:
    """A stored history's user and assistant turns, in order."""
    if not isinstance(history, list):
        return ()
    return tuple((t["role"], t["content"]) for t in history
                 if isinstance(t, dict) and t.get("role") in TURN_ROLES and isinstance(t.get("content"), str))


class ConversationReader:
    """Reads generations' judged histories; an attack's dialogue is looked up once per (attack, sha256)."""

    def __init__(self) -> None:
        self._dialogues: dict[tuple[str, str | None], tuple[Turn, ...] | None] = {}

    def history(self, g: Generation) -> tuple[Turn, ...]:
        """The turns a judge sees before `g.prompt`: the conversation's own, never an attack's (module docstring)."""
        turns = stored_turns(g.history)
        if not turns or g.attack is None:
            return turns
        dialogue = self._dialogue(g.attack, g.attack_sha256)
        if dialogue is None or len(dialogue) > len(turns):
            return ()
        own = turns[: len(turns) - len(dialogue)]
        return own if own + dialogue == turns else ()

    def _dialogue(self, name: str, sha256: str | None) -> tuple[Turn, ...] | None:
        key = (name, sha256)
        if key not in self._dialogues:
            self._dialogues[key] = attack_dialogue(name, sha256)
        return self._dialogues[key]


def attack_dialogue(name: str, sha256: str | None) -> tuple[Turn, ...] | None:
    """The turns the catalog attack `name` puts before a request (its shots; none for a one-turn attack), or None
    when it cannot be known: no such attack, or not the one that ran (another sha256)."""
    from harness import attacks

    try:
        attack = attacks.load(name)
    except UsageError:
        return None
    if sha256 is None or attack.sha256 != sha256:
        return None
    return tuple((t.role, t.content) for t in attack.apply("").history)


def judged_history(g: Generation) -> tuple[Turn, ...]:
    """One generation's judged history (a `ConversationReader` reads many, each attack looked up once)."""
    return ConversationReader().history(g)
