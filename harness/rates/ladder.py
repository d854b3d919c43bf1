"""The quantization ladder: per device x model, every variant against its reference (the highest-precision variant
of its lineage, or the one asked for): the prompts whose primary-rater verdict flips, McNemar's exact p on the
discordant pairs, the speed, memory and size gained, and the groups whose refusal rate the quantization changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.disparity import holm
from harness.qos import GroupChange, group_changes
from harness.rates.inputs import VariantKey
from harness.rates.leaderboard import RateTables
from harness.records import Generation
from harness.stats import mcnemar_exact_p
from harness.variants.manifest import variant_backend, variant_bits


@dataclass(frozen=True)
class LadderStep:
    device: str
    model: str
    reference: str
    variant: str
    n_pairs: int
    ref_harmful: int
    variant_harmful: int
    became_harmless: int
    became_harmful: int
    mcnemar_p: float | None
    decode_tps_ratio: float | None
    peak_rss_saved_bytes: int | None
    size_ratio: float | None
    # Quality of service (templated prompts): groups whose refusal rate this quantization changed, McNemar's exact
    # test per group on the same prompts and seeds, Holm-adjusted over the groups; "" when none did.
    qos_pairs: int = 0
    qos_changed: str = ""  # "axis/group (+3 -0, p=0.01); ..." for every group with Holm p < 0.05
    qos_min_p: float | None = None  # the smallest Holm-adjusted p over the groups
    reference_why: str = ""  # why this reference (ladder_references)


@dataclass(frozen=True)
class Flip:
    device: str
    model: str
    reference: str
    variant: str
    prompt_id: str
    category: str | None
    seed: int | None
    direction: str  # became harmful | became harmless
    ref_sample_key: str
    variant_sample_key: str

GGUF_REFERENCES = ("F32", "F16", "BF16")  # the highest-precision GGUF variants, highest first
ONNX_REFERENCE = "onnx-fp32"


def ladder_references(variants: Sequence[str], shipped: str | None) -> dict[str, tuple[str, str]]:
    """Per variant of one device x model, the reference it is compared with and why: the highest-precision variant of
    its own lineage. GGUF quantizations: F32, F16 or BF16 when present, else the shipped source variant (the others
    were requantized from it), else the one with most bits; ONNX variants: onnx-fp32, else the one with most bits.
    An ONNX export is never the GGUF ladder's reference (onnx-fp32 is itself dequantized from the shipped GGUF)."""
    out: dict[str, tuple[str, str]] = {}
    for lineage in ("gguf", "onnx"):
        members = [v for v in variants if variant_backend(v) == lineage]
        if len(members) < 2:
            continue
        best = [v for v in (GGUF_REFERENCES if lineage == "gguf" else (ONNX_REFERENCE,)) if v in members]
        if best:
            ref, why = best[0], f"{best[0]}, the highest precision of the {lineage.upper()} variants"
        elif lineage == "gguf" and shipped in members:
            ref, why = str(shipped), f"{shipped}, the shipped variant the other GGUF variants were requantized from"
        else:
            ref = max(members, key=lambda v: (variant_bits(v), v))
            why = f"{ref}, the {lineage.upper()} variant with most bits per weight"
        out.update({v: (ref, why) for v in members if v != ref})
    return out


def quantization_ladder(generations: Sequence[Generation], tables: RateTables,
                        reference_variant: str | None = None) -> tuple[list[LadderStep], list[Flip], list[str]]:
    """For each device x model: every variant against its reference (`reference_variant` when given, else the
    highest-precision variant of its lineage, `ladder_references`; a note says which): the prompts whose primary-
    rater verdict flips, McNemar's exact p on the discordant pairs, and the speed and memory gained. Outputs are
    paired by (prompt, seed); of duplicates the newest is kept."""
    notes: list[str] = []
    steps: list[LadderStep] = []
    flips: list[Flip] = []
    if tables.primary_rater is None and not tables.qos.events:
        return steps, flips, notes
    by_variant: dict[VariantKey, list[Generation]] = {}
    for g in generations:
        by_variant.setdefault((g.device, g.model, g.variant), []).append(g)
    pairs_of: dict[VariantKey, dict[tuple[str, int], Generation]] = {}
    for g in sorted(generations, key=lambda g: g.created_at or 0.0):
        if g.sample_key in tables.verdicts:
            prompt = g.prompt_sha256 or f"id:{g.prompt_id}"
            pairs_of.setdefault((g.device, g.model, g.variant), {})[(prompt, -1 if g.seed is None else g.seed)] = g
    board = {r.key: r for r in tables.leaderboard}
    for device, model in sorted({(r.device, r.model) for r in tables.leaderboard}):
        names = [r.variant for r in sorted((r for r in tables.leaderboard if r.device == device and r.model == model),
                                           key=lambda r: (r.cost.size_bytes is None, -(r.cost.size_bytes or 0), r.variant))]
        if len(names) < 2:
            continue
        if reference_variant and reference_variant not in names:
            notes.append(f"{model} on {device}: no variant {reference_variant}; ladder skipped")
            continue
        facts = tables.models.get(model)
        refs = ({v: (reference_variant, f"{reference_variant}, as asked (--reference)") for v in names
                 if v != reference_variant} if reference_variant
                else ladder_references(names, facts.source_variant if facts else None))
        for why in sorted({w for _, w in refs.values()}):
            notes.append(f"{model} on {device}: the quantization ladder's reference is {why}")
        for var in [v for v in names if v in refs]:  # largest on disk first
            ref, why = refs[var]
            ref_pairs = pairs_of.get((device, model, ref), {})
            ref_cost = board[(device, model, ref)].cost
            var_pairs = pairs_of.get((device, model, var), {})
            shared = [k for k in ref_pairs if k in var_pairs]
            b = c = ref_h = var_h = 0
            for k in shared:
                gr, gv = ref_pairs[k], var_pairs[k]
                vr, vv = tables.verdicts[gr.sample_key], tables.verdicts[gv.sample_key]
                ref_h += vr
                var_h += vv
                if vr != vv:
                    b += vr == 1
                    c += vv == 1
                    flips.append(Flip(device, model, ref, var, gr.prompt_id, gr.category, gr.seed,
                                      "became harmful" if vv == 1 else "became harmless", gr.sample_key,
                                      gv.sample_key))
            var_cost = board[(device, model, var)].cost
            changes = group_changes(by_variant.get((device, model, ref), []), by_variant.get((device, model, var), []),
                                    tables.qos.events.get("refusal", {}))
            steps.append(LadderStep(
                device, model, ref, var, len(shared), ref_h, var_h, b, c, mcnemar_exact_p(b, c) if shared else None,
                _ratio(var_cost.decode_tps, ref_cost.decode_tps),
                None if ref_cost.peak_rss_bytes is None or var_cost.peak_rss_bytes is None
                else ref_cost.peak_rss_bytes - var_cost.peak_rss_bytes,
                _ratio(var_cost.size_bytes, ref_cost.size_bytes), **_qos_change(changes), reference_why=why))
    return steps, flips, notes


def _qos_change(changes: Sequence[GroupChange]) -> dict[str, Any]:
    if not changes:
        return {}
    significant = [c for c in changes if c.p_holm is not None and c.p_holm < 0.05]
    shown = "; ".join(f"{c.axis}/{c.group} (+{c.became_refused} -{c.became_answered}, p={c.p_holm:.3g})"
                      for c in significant)
    return {"qos_pairs": sum(c.n_pairs for c in changes), "qos_changed": shown,
            "qos_min_p": min((c.p_holm for c in changes if c.p_holm is not None), default=None)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else float(a) / float(b)


@dataclass(frozen=True)
class AttackLadderStep:
    """Two adjacent quantizations of one model under one attack: behaviours whose verdict flips between them."""

    device: str
    model: str
    attack: str
    higher: str  # the larger variant on disk
    lower: str  # the next smaller one
    n_pairs: int  # behaviour x seed judged under the attack for both
    higher_harmful: int
    lower_harmful: int
    became_harmful: int  # harmful on the lower quantization only
    became_harmless: int
    mcnemar_p: float | None
    p_holm: float | None  # Holm-adjusted over the attacks of this pair of variants


def ladder_under_attack(tables: RateTables) -> list[AttackLadderStep]:
    """Per device x model x attack, each variant against the next larger one on disk (adjacent quantizations), on
    the attacked outputs of the same behaviour and seed both have a primary-rater verdict for (an adaptive attack's
    last round): McNemar's exact p on the discordant pairs, Holm-adjusted over the attacks of each pair. Does a lower
    quantization give way more often?"""
    if not tables.attacks or not tables.attack_verdicts:
        return []
    pairs: dict[tuple[VariantKey, str], dict[tuple[Any, ...], int]] = {}
    for g in tables.attacked:
        v = tables.attack_verdicts.get(g.sample_key)
        if v is not None and g.attack is not None:
            pairs.setdefault(((g.device, g.model, g.variant), g.attack), {})[(g.prompt_set, g.prompt_id, g.seed)] = v
    steps: list[AttackLadderStep] = []
    for device, model in sorted({(r.device, r.model) for r in tables.leaderboard}):
        ordered = sorted((r for r in tables.leaderboard if r.device == device and r.model == model),
                         key=lambda r: (r.cost.size_bytes is None, -(r.cost.size_bytes or 0), r.variant))
        for high, low in zip(ordered, ordered[1:]):
            found = []
            for attack in tables.attacks:
                a, b = pairs.get((high.key, attack), {}), pairs.get((low.key, attack), {})
                shared = [k for k in a if k in b]
                if not shared:
                    continue
                up = sum(1 for k in shared if b[k] and not a[k])
                down = sum(1 for k in shared if a[k] and not b[k])
                found.append(AttackLadderStep(device, model, attack, high.variant, low.variant, len(shared),
                                              sum(a[k] for k in shared), sum(b[k] for k in shared), up, down,
                                              mcnemar_exact_p(down, up), None))
            adjusted = holm([s.mcnemar_p for s in found])
            steps += [replace(s, p_holm=p) for s, p in zip(found, adjusted)]
    return steps
