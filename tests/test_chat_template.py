"""A model's chat template is untrusted Jinja: it renders within a time bound and size bounds
(harness.backends.chat_template), and one that hangs or breaks fails the load with exit 2 naming the file."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends import chat_template
from harness.backends.chat_template import TemplateFailure, render
from harness.backends.prompt_format import PromptFormat
from harness.errors import UsageError

sys.path.insert(0, str(Path(__file__).parent / "adversarial"))
import ggufs  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VARS = {"messages": [{"role": "user", "content": "Hi %09999999d {:>99999999} " + "x" * 100}],
        "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}


def test_an_honest_template_renders_as_before() -> None:
    out = render(CHATML, VARS, 120)
    assert out == f"<|im_start|>user\n{VARS['messages'][0]['content']}<|im_end|>\n<|im_start|>assistant\n"  # type: ignore[index]
    assert render("{{ messages|tojson }}{{ 'a' ~ 'b' ~ 3 }}{{ '%s-%d'|format('x', 2) }}{{ 'ab' * 3 }}", VARS, 120)\
        .endswith("ab3x-2ababab")


@pytest.mark.parametrize("template, reason", [
    (ggufs.NESTED_LOOPS, "runs for more than"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "more than"),
    ("{{ 'x' * 10000000000 }}", "builds a value"),
    ("{% set s = namespace(v='x') %}{% for i in range(64) %}{% set s.v = s.v ~ s.v %}{% endfor %}", "more than"),
    ("{% set s = namespace(v='x') %}{% for i in range(64) %}{% set s.v = s.v + s.v %}{% endfor %}", "builds a value"),
    ("{% set s = 'x' * 100000 %}{{ ([s] * 100000)|join }}", "more than"),
    ("{{ '%0999999999d' % 1 }}", "width of millions"),
    ("{{ '{:>999999999}'.format(1) }}", "width of millions"),
    ("{{ 'x'|center(1000000000) }}", "passes 1000000000"),
    ("{{ range(10000000)|list }}", "passes 10000000"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recurses"),
    ("{{ lipsum(1000000) }}", "UndefinedError"),
    ("{{ 1 + 'a' }}", "TypeError"),
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{% for x in %}", "TemplateSyntaxError"),
])
def test_a_hostile_template_fails_with_a_reason(template: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_template, "RENDER_TIME_S", 0.5)
    with pytest.raises(TemplateFailure) as exc:
        render(template, VARS, 120)
    assert reason in exc.value.reason


def test_the_trace_of_the_caller_is_restored() -> None:
    def tracer(*_: object) -> None:
        return None

    sys.settrace(tracer)
    try:
        render(CHATML, VARS, 120)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


def test_prompt_format_names_the_file_at_load() -> None:
    manifest = SimpleNamespace(chat_format="template", path=Path("m.toml"), completion_template="{prompt}", stops=[])
    with pytest.raises(UsageError, match=r"the chat template of evil\.gguf does not render \(it raises 'no'\)"):
        PromptFormat.for_model(manifest, "{{ raise_exception('no') }}", model_file="evil.gguf")
    fmt = PromptFormat.for_model(manifest, CHATML, model_file="ok.gguf")
    assert fmt.render("Hello").endswith("<|im_start|>assistant\n")


def test_a_gguf_whose_template_never_ends_is_exit_2_naming_it(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "evil.gguf"
    model.write_bytes(ggufs.with_chat_template(ggufs.NESTED_LOOPS))
    r = cli("run", "--model", model, "--limit", "1", "--max-tokens", "4", "--no-judge", "--no-report", "--quiet",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 2, r.err
    assert "chat template of evil.gguf does not render (it runs for more than" in r.err.splitlines()[-1]
