"""The report's "Under attack" section: attack x variant (harm and refusal with intervals), behaviours broken by any
attack, harm per category, the quantization ladder under attack (McNemar per attack, Holm-adjusted), and the rates
per system prompt. Every figure comes from harness.rates (attacks, ladder); every string is escaped by _html."""

from __future__ import annotations

from harness import formatting as f
from harness.rates.ladder import AttackLadderStep, ladder_under_attack
from harness.rates.leaderboard import LeaderboardRow, RateTables
from harness.reporting import _html as h
from harness.reporting._markdown import short_prompt


def under_attack_section(rt: RateTables) -> h.Section | None:
    """The section, or None when the selection has no attacked generation and one system prompt only."""
    attacked = [r for r in rt.leaderboard if r.attacks is not None]
    if not attacked and not rt.system_prompts:
        return None
    s = h.Section("attacks", "Under attack")
    if rt.main_system_prompt is not None:
        s.add(h.tag("p", f"Every figure is under the system prompt \"{short_prompt(rt.main_system_prompt, 200)}\" "
                         "(no generation went without one).", "note"))
    if attacked:
        s.add(h.tag("p", f"Harm under an attack is its attack success rate: the share of harmful outputs by "
                         f"{rt.attack_rater or '-'} on the attacked harmful prompts (exact 95% interval), estimated "
                         "and marked ('how') as the baseline's; refusal by "
                         f"{rt.refusal_rater or '-'}, which detects refusals even where a harm judge is weak. The "
                         "leaderboard's columns are the no-attack baseline. Of an adaptive attack's rounds (pair) the last "
                         "counts (it stops at success, so a success in any round counts); rounds: the mean rounds "
                         "it used.", "note"),
              h.table(ATTACK_COLUMNS, [row for r in attacked for row in attack_cells(r)]),
              h.tag("h3", "Worst attack and behaviours broken by any attack"),
              h.tag("p", "Worst attack: the one whose 95% upper bound is highest (what --max-asr limits). Broken by "
                         "any attack: behaviours (prompt ids) harmful under at least one attack, among those judged "
                         "under every attack the variant ran.", "note"),
              h.table(WORST_COLUMNS, [worst_cells(r) for r in attacked]))
        s.add(*ladder_parts(ladder_under_attack(rt)))
        s.add(h.tag("h3", "Harm per category (no attack)"),
              h.table([h.Column("device", True), h.Column("model:variant", True), h.Column("category", True),
                       h.Column(f"harm ({rt.primary_rater or '-'}, raw)"), h.Column("n rated")],
                      [[r.device, r.name, c.category or "-", f.rate_ci(c.rate, c.ci_low, c.ci_high), c.n_valid]
                       for r in rt.leaderboard for c in r.categories]))
    if rt.system_prompts:
        s.add(h.tag("h3", "System prompts (no attack)"),
              h.table([h.Column("device", True), h.Column("model:variant", True), h.Column("system prompt", True),
                       h.Column("harm (raw)"), h.Column("refusal"), h.Column("n")],
                      [[x.device, f"{x.model}:{x.variant}", short_prompt(x.system_prompt),
                        f.rate_ci(x.harm_rate, x.harm_ci_low, x.harm_ci_high),
                        f.rate_ci(x.refusal_rate, x.refusal_ci_low, x.refusal_ci_high), x.n]
                       for x in rt.system_prompts]))
    return s


ATTACK_COLUMNS = [h.Column("device", True), h.Column("model:variant", True), h.Column("attack", True),
                  h.Column("harm (ASR)", title_attr="attack success rate, exact 95% interval"), h.Column("how", True),
                  h.Column("n rated"), h.Column("refusal"), h.Column("n labelled"),
                  h.Column("rounds", title_attr="an adaptive attack's mean rounds used per behaviour (it stops at "
                                                "success); - for a static attack")]
WORST_COLUMNS = [h.Column("device", True), h.Column("model:variant", True), h.Column("worst attack", True),
                 h.Column("harm under it"), h.Column("broken by any attack")]


def attack_cells(r: LeaderboardRow) -> list[list[object]]:
    assert r.attacks is not None
    return [[r.device, r.name, a.attack, f.rate_ci(a.harm_rate, a.harm_ci_low, a.harm_ci_high), a.harm_method or "-",
             f.count(a.harm_n), f.rate_ci(a.refusal_rate, a.refusal_ci_low, a.refusal_ci_high), f.count(a.refusal_n),
             f"{a.rounds_mean:.1f}" if a.rounds_mean is not None else "-"]
            for a in r.attacks.attacks]


def worst_cells(r: LeaderboardRow) -> list[object]:
    assert r.attacks is not None
    u, w = r.attacks, r.attacks.worst
    broken = (f"{u.broken_n}/{u.broken_of} {f.rate_ci(u.broken_rate, u.broken_ci_low, u.broken_ci_high)}"
              if u.broken_of else "-")
    return [r.device, r.name, w.attack if w else "-",
            f.rate_ci(w.harm_rate, w.harm_ci_low, w.harm_ci_high) if w else "-", broken]


def ladder_parts(steps: list[AttackLadderStep]) -> list[object]:
    parts: list[object] = [h.tag("h3", "Quantization ladder under attack")]
    if not steps:
        return [*parts, h.empty("No model has two variants with judged outputs under the same attack.")]
    parts.append(h.tag("p", "Each variant against the next larger one of its model on disk, under each attack, on the "
                            "same behaviours and seeds judged for both: how many became harmful or harmless on the "
                            "smaller one, McNemar's exact p, and p Holm-adjusted over the attacks of the pair.", "note"))
    body = [[s.device, s.model, f"{s.higher} -> {s.lower}", s.attack, s.n_pairs, s.higher_harmful, s.lower_harmful,
             s.became_harmful, s.became_harmless, f.pvalue(s.mcnemar_p), f.pvalue(s.p_holm)] for s in steps]
    parts.append(h.table([h.Column("device", True), h.Column("model", True), h.Column("step", True),
                          h.Column("attack", True), h.Column("pairs"), h.Column("harmful (larger)"),
                          h.Column("harmful (smaller)"), h.Column("became harmful"), h.Column("became harmless"),
                          h.Column("McNemar p"), h.Column("Holm p")], body))
    return parts
