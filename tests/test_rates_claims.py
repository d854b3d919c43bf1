"""What a surface may call a device's least harmful variant (harness.rates.claims.least_harmful, the twin of
`fastest`), and the flat columns a leaderboard row prints as; on hand-made generations and verdicts whose exact
(Clopper-Pearson) 95% intervals are worked out in the comments."""

from __future__ import annotations

from harness.rates import CostSummary, LeaderboardRow, RatingCount, least_harmful, rate_tables
from harness.rates.claims import clearly_less_harmful
from harness.records import Generation


def gen(variant: str, i: int, decode: float, device: str = "dev") -> Generation:
    return Generation(sample_key=f"{device}-{variant}-{i}", run_id="r", device=device, model="m", variant=variant,
                      backend="gguf", prompt_id=f"p{i}", prompt=f"prompt {i}", decode_tps=decode, ttft_s=0.1,
                      latency_s=1.0, n_output_tokens=10, peak_rss_bytes=100, benign=False, seed=0)


def board(harmful: dict[str, int], n: int = 30, device: str = "dev") -> list[LeaderboardRow]:
    """n outputs per variant, the first `harmful[variant]` of them judged harmful; decode speed 10 + its index."""
    gens, counts = [], []
    for k, (variant, n_harmful) in enumerate(harmful.items()):
        for i in range(n):
            g = gen(variant, i, 10.0 + k, device)
            gens.append(g)
            counts.append(RatingCount(g.sample_key, "judge-x", "judge", "score", 1, int(i < n_harmful), 0))
    return rate_tables(gens, counts, []).leaderboard


def test_a_variant_is_called_least_harmful_only_when_its_interval_lies_below_every_other() -> None:
    # 0/30: [0, 11.6%]; 30/30: [88.4%, 100%]; 2/30: [0.8%, 22.1%] overlaps 0/30's.
    (clear,) = least_harmful(board({"A": 0, "B": 30}))
    assert clear.device == "dev" and clear.leader.variant == "A" and clear.clear
    assert [r.variant for r in clear.others] == ["B"]
    (overlap,) = least_harmful(board({"A": 0, "B": 30, "C": 2}))
    assert overlap.leader.variant == "A" and not overlap.clear and {r.variant for r in overlap.others} == {"B", "C"}
    (alone,) = least_harmful(board({"A": 3}))
    assert alone.leader.variant == "A" and alone.others == () and not alone.clear  # nothing to be clearer than


def test_a_tie_in_harm_goes_to_the_faster_variant_and_an_unrated_device_gets_no_verdict() -> None:
    (tie,) = least_harmful(board({"slow": 0, "fast": 0}))  # the same 0/30; fast decodes at 11, slow at 10
    assert tie.leader.variant == "fast" and not tie.clear  # identical intervals overlap
    unrated = rate_tables([gen("A", 0, 10.0, device="other")], [], []).leaderboard
    assert least_harmful(unrated) == []
    a, b = board({"A": 0, "B": 30})
    assert clearly_less_harmful(a, b) and not clearly_less_harmful(b, a)


# The flat columns `harness leaderboard --json`, leaderboard.csv and the Parquet table have always printed, in order.
FLAT_COLUMNS = [
    "rank", "device", "model", "variant", "backend", "n", "n_errors", "size_bytes", "ttft_s", "prompt_tps",
    "decode_tps", "latency_s", "latency_p90_s", "peak_rss_bytes", "peak_vram_bytes", "energy_j_per_token",
    "bandwidth_fraction", "harm_rater", "harm_rate", "harm_ci_low", "harm_ci_high", "harm_n", "harm_n_invalid",
    "worst_category", "worst_category_rate", "worst_category_n", "refusal_rater", "refusal_rate", "refusal_ci_low",
    "refusal_ci_high", "refusal_n", "over_refusal_rate", "over_refusal_ci_low", "over_refusal_ci_high",
    "over_refusal_n", "other_harm", "harm_method", "harm_raw_rate", "harm_raw_ci_low", "harm_raw_ci_high",
    "harm_card", "harm_human_n", "harm_human_rate", "harm_human_ci_low", "harm_human_ci_high", "harm_note",
    "harm_judge_warning", "front_tps", "front_ram", "passes", "reasons", "n_cost", "n_contended", "n_warmup",
    "decode_tps_q1", "decode_tps_q3", "contended_n_cost", "contended_decode_tps", "contended_decode_tps_q1",
    "contended_decode_tps_q3", "contended_ttft_s", "contended_interference_frac", "qos_max_gap", "qos_p",
    "qos_axis", "qos_groups", "qos_n", "qos_rater", "qos_gap_ci_high", "qos_gap_ci_axis", "base_model",
]


def test_a_row_holds_its_cost_and_prints_as_the_flat_columns() -> None:
    assert LeaderboardRow.columns() == FLAT_COLUMNS
    (row,) = board({"A": 3}, n=4)
    assert isinstance(row.cost, CostSummary) and (row.device, row.model, row.variant) == ("dev", "m", "A")
    flat = row.as_dict()
    assert list(flat) == FLAT_COLUMNS
    assert (flat["decode_tps"], flat["n"], flat["n_cost"], flat["harm_rate"]) == (10.0, 4, 4, 0.75)
    assert (flat["contended_n_cost"], flat["contended_decode_tps"], flat["reasons"]) == (0, None, [])
    assert flat["other_harm"] == {"judge-x": 0.75} and flat["other_harm"] is not row.other_harm
