"""Judge TOMLs, rubrics and position-bias control."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.judging.config import list_judges, load_judge, parse_judge
from harness.judging.modes import get_mode
from harness.judging.order import apply_order, shown_orders, to_canonical
from harness.judging.requests import build_request
from harness.judging.rubrics import load_rubric, split_messages, truncate
from harness.judging.tasks import plan_tasks
from harness.records import Generation

SHIPPED = {"refusal-detector", "smollm2-score", "smollm2-rank", "local-openai", "gpt-4o", "llama-guard"}


def test_shipped_judges_load_with_their_contract_fields() -> None:
    judges = {j.name: j for j in list_judges()}
    assert SHIPPED <= set(judges)
    assert judges["refusal-detector"].kind == "refusal" and judges["refusal-detector"].mode == "refusal"
    score = judges["smollm2-score"]
    assert (score.kind, score.mode, score.structured_output, score.max_tokens) == ("llama-cpp", "score", "digit", 1)
    assert score.model is not None and score.model.startswith("smollm2-135m-instruct")
    rank = judges["smollm2-rank"]
    assert (rank.kind, rank.mode, rank.structured_output) == ("llama-cpp", "rank", "grammar")
    local = judges["local-openai"]
    assert (local.kind, local.base_url, local.api_key_optional) == ("openai", "http://127.0.0.1:8080/v1", True)
    gpt = judges["gpt-4o"]
    assert (gpt.kind, gpt.api_key_env, gpt.base_url) == ("openai", "OPENAI_API_KEY", "https://api.openai.com/v1")
    assert gpt.price_input_per_1k_usd == 0.0025 and gpt.price_output_per_1k_usd == 0.01
    # 1000 input tokens and 200 output tokens: 1.0 * 0.0025 + 0.2 * 0.01 = 0.0045 USD.
    assert gpt.cost_usd(1000, 200) == pytest.approx(0.0045)
    assert local.cost_usd(1000, 200) is None  # no price configured: unknown, not free
    guard = judges["llama-guard"]
    assert (guard.kind, guard.mode, guard.rubric_for("guard")) == ("llama-cpp", "guard", None)
    assert guard.model_path


def test_every_rubric_of_every_shipped_judge_renders() -> None:
    for j in list_judges():
        for mode in ("score", "rank", "pairwise", "refusal"):
            name = j.rubric_for(mode)
            if name is None:
                continue
            rubric = load_rubric(name, j.path)
            msgs = rubric.render(prompt="P?", outputs=[{"label": "A", "text": "x"}, {"label": "B", "text": "y"}],
                                 output="x", k=2, labels=["A", "B"], output_format="text", max_score=3)
            assert msgs[-1]["role"] == "user" and "P?" in msgs[-1]["content"]
            assert len(rubric.version) == 12


def test_unknown_judge_lists_known_judges() -> None:
    with pytest.raises(UsageError) as e:
        load_judge("no-such-judge")
    assert "no-such-judge" in str(e.value) and "smollm2-score" in str(e.value) and "refusal-detector" in str(e.value)


def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UsageError) as e:
        load_judge("gpt-4o").api_key()
    assert "OPENAI_API_KEY" in str(e.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-xyz")
    assert load_judge("gpt-4o").api_key() == "sk-test-xyz"
    monkeypatch.delenv("LOCAL_OPENAI_API_KEY", raising=False)
    assert load_judge("local-openai").api_key() is None  # optional key


@pytest.mark.parametrize("toml, fragment", [
    ({"kind": "magic"}, "kind 'magic' is unknown"),
    ({"kind": "openai", "model": "m"}, "needs base_url"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "api_key_env": "sk-live-123 456"}, "NAME of an"),
    ({"kind": "refusal", "mode": "rank"}, "cannot use mode 'rank'"),
    ({"kind": "llama-cpp"}, "needs model"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "concurrency": 0}, "concurrency"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "colour": "red"}, "unknown key(s) colour"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "sampling": {"temprature": 0}}, "temprature"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "max_tokens": "lots"}, "must be an integer"),
    ({"kind": "openai", "base_url": "http://x/v1", "model": "m", "order": "random"}, "order 'random'"),
])
def test_bad_judge_definitions_are_usage_errors(toml: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_judge(toml, Path("bad.toml"), "bad")
    assert fragment in str(e.value)
    assert "bad.toml" in str(e.value)


def test_overrides_are_validated() -> None:
    cfg = load_judge("local-openai")
    assert cfg.with_overrides(mode="rank", concurrency=2).mode == "rank"
    assert cfg.with_overrides(mode=None) is cfg
    with pytest.raises(UsageError):
        load_judge("refusal-detector").with_overrides(mode="score")


def test_identity_ignores_concurrency_but_not_sampling() -> None:
    cfg = load_judge("local-openai")
    assert cfg.with_overrides(concurrency=1).identity_hash() == cfg.identity_hash()
    assert cfg.with_overrides(temperature=0.7).identity_hash() != cfg.identity_hash()
    assert cfg.with_overrides(base_url="http://127.0.0.1:9999/v1").identity_hash() != cfg.identity_hash()


def test_split_messages() -> None:
    assert split_messages("=== system ===\nS\n=== user ===\nU\n", "t") == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert split_messages("just text", "t") == [{"role": "user", "content": "just text"}]
    with pytest.raises(UsageError):
        split_messages("stray\n=== user ===\nU", "t")
    with pytest.raises(UsageError):
        split_messages("=== user ===\nU\n=== system ===\nS", "t")


def test_truncate_marks_the_cut() -> None:
    assert truncate("short", 100) == "short"
    cut = truncate("x" * 200, 50)
    assert len(cut) <= 50 and cut.endswith("[...truncated]")


# -- position bias control ----------------------------------------------------------------------------
def test_order_policies() -> None:
    assert shown_orders(3, "fixed") == [[0, 1, 2]]
    assert shown_orders(3, "balanced") == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    # Balanced: every output appears exactly once at every position.
    for position in range(3):
        assert sorted(o[position] for o in shown_orders(3, "balanced")) == [0, 1, 2]
    s1 = shown_orders(5, "shuffle", 7, "group-1")
    assert s1 == shown_orders(5, "shuffle", 7, "group-1")  # reproducible
    assert sorted(s1[0]) == [0, 1, 2, 3, 4]
    # Different groups or seeds give different permutations (for 5 outputs, 120 permutations; these differ).
    others = {tuple(shown_orders(5, "shuffle", seed, f"group-{g}")[0]) for seed in range(3) for g in range(4)}
    assert len(others) > 1


def test_shown_order_maps_back() -> None:
    items = ["m1", "m2", "m3"]
    shown = [2, 0, 1]
    assert apply_order(items, shown) == ["m3", "m1", "m2"]
    # The judge said A (=m3) 3, B (=m1) N/A, C (=m2) 1 -> canonical m1 N/A, m2 1, m3 3.
    assert to_canonical([3, 0, 1], shown) == [0, 1, 3]


def _gen(key: str, model: str, prompt: str, output: str) -> Generation:
    return Generation(sample_key=key, run_id="t", device="external", model=model, variant="release",
                      backend="external", prompt_id="p", prompt=prompt, output=output)


def answer_schema(mode: str, k: int, max_score: int = 3) -> dict | None:
    cfg = load_judge("local-openai").with_overrides(max_score=max_score)
    return get_mode(mode).schema(k, cfg)


def test_rank_request_shows_outputs_in_the_shown_order() -> None:
    rows = [_gen("k1", "mistral-7b", "P", "first"), _gen("k2", "mpt-7b", "P", "second"),
            _gen("k3", "stablelm-alpha-7b", "P", "third")]
    cfg = load_judge("local-openai").with_overrides(mode="rank", order="balanced")
    plan = plan_tasks(rows, "rank", order="balanced")
    rubric = load_rubric(cfg.rubric_for("rank"), cfg.path)
    task = plan.tasks[1]
    assert task.shown_order == [1, 2, 0]
    text = build_request(task, cfg, rubric).messages[-1]["content"]
    # Content A is the canonical second output (mpt-7b), B the third, C the first.
    assert text.index("second") < text.index("third") < text.index("first")
    assert "Content A:" in text and "Content C:" in text


def test_answer_schemas() -> None:
    s = answer_schema("rank", 3)
    assert s["required"] == ["A", "B", "C"] and s["properties"]["A"]["enum"] == ["N/A", "1", "2", "3"]
    assert answer_schema("score", 1, 3)["properties"]["score"]["enum"] == [0, 1, 2, 3]
    assert answer_schema("guard", 1) is None


def test_mode_override_uses_the_rubric_of_that_mode() -> None:
    cfg = load_judge("smollm2-score")
    assert cfg.rubric_for("score") == "rubrics/harm-score-brief.j2"
    assert cfg.with_overrides(mode="rank").rubric_for("rank") == "rubrics/harm-rank.j2"
    assert cfg.with_overrides(mode="rank").rubric_for("score") == "rubrics/harm-score-brief.j2"


def test_output_constraint_per_mode() -> None:
    from harness.judging.requests import output_format

    score = load_judge("smollm2-score")
    assert score.structured_for("score") == "digit" and output_format(score, "score") == "digit"
    assert score.structured_for("rank") == "grammar" and output_format(score, "rank") == "json"
    local = load_judge("local-openai")
    assert local.structured_for("rank") == "json_object_schema" and output_format(local, "rank") == "json"
    digit_endpoint = local.with_overrides(structured_output="grammar")
    assert output_format(digit_endpoint, "score") == "digit" and output_format(digit_endpoint, "rank") == "text"


def test_openai_request_kwargs_per_structured_output() -> None:
    from harness.judging.openai_judge import OpenAIJudge
    from harness.judging.requests import JudgeRequest

    schema = answer_schema("score", 1)
    req = JudgeRequest("score", [{"role": "user", "content": "x"}], schema, 1)
    local = load_judge("local-openai")
    kw = OpenAIJudge(local).request_kwargs(req)
    assert kw["response_format"] == {"type": "json_object", "schema": schema}  # what llama.cpp's server takes
    assert (kw["temperature"], kw["max_tokens"], kw["seed"], kw["model"]) == (0.0, 64, 0, "local")
    assert "logprobs" not in kw and "extra_body" not in kw
    gpt = OpenAIJudge(load_judge("gpt-4o").with_overrides(mode="score")).request_kwargs(req)
    assert gpt["response_format"]["type"] == "json_schema" and gpt["response_format"]["json_schema"]["strict"]
    assert gpt["response_format"]["json_schema"]["schema"] == schema
    grammar = OpenAIJudge(local.with_overrides(structured_output="grammar", logprobs=True)).request_kwargs(req)
    assert grammar["extra_body"] == {"grammar": "root ::= [0-3]"} and "response_format" not in grammar
    assert grammar["logprobs"] is True and grammar["top_logprobs"] == 20
    plain = OpenAIJudge(local.with_overrides(structured_output="none")).request_kwargs(req)
    assert "response_format" not in plain and "extra_body" not in plain


def test_guard_grammar_compiles() -> None:
    from llama_cpp import LlamaGrammar

    from harness.judging.llama_judge import GUARD_GRAMMAR

    assert LlamaGrammar.from_string(GUARD_GRAMMAR, verbose=False) is not None


def test_an_ensemble_lists_each_judge_once(tmp_path: Path) -> None:
    """An ensemble listing one judge three times counted it once (members are told apart by name): refused, whether
    the same name is repeated or a name and a file load the same judge (issue 20)."""
    from harness.judging.ensemble import member_configs

    ens = tmp_path / "ens.toml"
    ens.write_text('kind = "ensemble"\nmode = "score"\nmembers = ["smollm2-score", "refusal-detector", '
                   '"smollm2-score"]\n')
    with pytest.raises(UsageError, match="members lists 'smollm2-score' more than once: list each judge once"):
        load_judge(str(ens))
    (tmp_path / "same.toml").write_text('name = "refusal-detector"\nkind = "refusal"\nmode = "refusal"\n')
    ens.write_text('kind = "ensemble"\nmode = "score"\nmembers = ["refusal-detector", "same.toml"]\n')
    cfg = load_judge(str(ens))
    with pytest.raises(UsageError, match="members 'refusal-detector' and 'same.toml' are both judge "
                                         "'refusal-detector': list each judge once"):
        member_configs(cfg)
    (tmp_path / "other.toml").write_text('kind = "refusal"\nmode = "refusal"\n')
    ens.write_text('kind = "ensemble"\nmode = "score"\nmembers = ["refusal-detector", "other.toml"]\n')
    assert [m.name for m in member_configs(load_judge(str(ens)))] == ["refusal-detector", "other"]
