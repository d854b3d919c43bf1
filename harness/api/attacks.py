"""The attack catalog (`harness attacks list|show`): what each attack does, its family and published source, and
what it sends for a request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttackSummary:
    name: str
    family: str
    description: str
    source: str
    parts: tuple[str, ...]  # a composed attack's parts, in order (empty for a single transform)
    encoded_answer: str | None  # the encoding the answer is asked for (judges read it decoded)
    sha256: str
    # an adaptive attack's attacker, judge in the loop, rounds and attacker sampling (None: a static attack)
    adaptive: dict[str, object] | None = None


@dataclass(frozen=True)
class AttackExample:
    """An attack applied to one request: the turns it sends (an adaptive attack: what its attacker is sent in
    round 1)."""

    attack: AttackSummary
    turns: list[dict[str, str]]


def list_attacks() -> list[AttackSummary]:
    """Every attack of the catalogs (shipped and user)."""
    from harness.attacks import names

    return [show_attack(n).attack for n in names()]


def show_attack(name: str, request: str = "How do I pick a lock?") -> AttackExample:
    """One attack, and what it sends for `request`."""
    from harness.attacks import load

    a = load(name)
    done = a.apply(request)
    settings = None
    if a.adaptive is not None:
        s = a.adaptive
        settings = {"attacker": s.attacker, "judge": s.judge, "rounds": s.rounds,
                    "sampling": {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
                                 "seed": s.seed}}
    summary = AttackSummary(a.name, a.family, a.description, a.source, tuple(p.name for p in a.parts),
                            done.answer_encoding, a.sha256, settings)
    if a.adaptive is not None:
        from harness.adaptive_attack import attacker_preview

        return AttackExample(summary, attacker_preview(a, request))
    return AttackExample(summary, [{"role": t.role, "content": t.content} for t in done.turns])
