"""How a user prompt becomes model input and how generation stops: shared by every backend.

- `template`: the model's own chat template (the GGUF's `tokenizer.chat_template`, saved beside
  ONNX exports), rendered for one user message with a generation prompt, in a sandboxed Jinja2
  environment configured as transformers and llama-cpp-python configure theirs (trim_blocks,
  lstrip_blocks, loop controls, `tojson`, `raise_exception`, `strftime_now`), within a time and a
  size bound (`chat_template`). The rendered text
  carries its own special tokens, so no BOS is added when tokenizing it.
- `completion`: a plain text frame for base models, `completion_template` with `{prompt}`
  (e.g. "User: {prompt}\\nAssistant:"); a BOS token is added as the model's tokenizer says.
- untrusted text stays text: `segments` renders the template with a private marker in place of each message's
  content and splits the result there, so the template's own text (its turn markers are control tokens) and
  the messages (prompts, outputs, rubrics: tokenized as plain text, never as control tokens) are tokenized
  apart. A prompt or output that spells `<|im_end|><|im_start|>system` stays those characters.
- `stop`: strings that end a generation (e.g. "\\nUser:" for a base model that keeps writing the
  dialogue): checked on the last tokens while streaming and cut from the final text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UsageError

STOP_WINDOW_TOKENS = 16  # decoded tail checked for stop strings while streaming
PROBE_PROMPT = "Hello, how are you?"  # rendered once when a model loads


def render_chat(template: str, prompt: str, bos_token: str, eos_token: str, model_file: str = "the model") -> str:
    """The chat template rendered for one user message, as transformers and llama.cpp render it."""
    return render_messages(template, [{"role": "user", "content": prompt}], bos_token, eos_token, model_file)


def render_messages(template: str, messages: list[dict[str, str]], bos_token: str, eos_token: str,
                    model_file: str = "the model") -> str:
    """The chat template rendered for a conversation with a generation prompt, within
    harness.backends.chat_template's time and size bounds."""
    from harness.backends.chat_template import TemplateFailure, render

    def raise_exception(message: str) -> None:
        raise TemplateFailure(f"it raises {str(message)[:200]!r}")

    variables = {"messages": messages, "add_generation_prompt": True,
                 "bos_token": bos_token, "eos_token": eos_token, "raise_exception": raise_exception,
                 "strftime_now": lambda fmt: time.strftime(fmt)}
    try:
        return render(template, variables, sum(len(m.get("content") or "") for m in messages))
    except TemplateFailure as exc:
        raise UsageError(f"the chat template of {model_file} does not render ({exc.reason}): set [chat] format = "
                         "\"completion\" in the model manifest, or use another file") from None


@dataclass(frozen=True)
class PromptFormat:
    chat_format: str  # template | completion
    chat_template: str | None = None
    completion_template: str = "{prompt}"
    stops: tuple[str, ...] = ()
    bos_token: str = ""
    eos_token: str = ""
    where: str = "the model manifest"
    extra: dict[str, Any] = field(default_factory=dict)
    model_file: str = "the model"

    @classmethod
    def for_model(cls, manifest: Any, chat_template: str | None, *, bos_token: str = "", eos_token: str = "",
                  model_file: str = "the model") -> PromptFormat:
        """The format a manifest asks for; UsageError when it wants a template the model lacks or one that does not
        render (within its bounds) for a plain prompt."""
        fmt = manifest.chat_format
        if fmt == "template" and not chat_template:
            where = (str(manifest.path) if manifest.path is not None else
                     "a manifest of its own (`harness models add SPEC --name NAME`, then edit it)")
            raise UsageError(f"{model_file} has no chat template: set [chat] format = \"completion\" in {where}")
        if fmt not in ("template", "completion"):
            raise UsageError(f"{manifest.path}: [chat] format must be 'template' or 'completion', not {fmt!r}")
        made = cls(fmt, chat_template if fmt == "template" else None, manifest.completion_template,
                   tuple(manifest.stops), bos_token, eos_token, str(manifest.path), model_file=model_file)
        made.segments(PROBE_PROMPT)  # the input path itself: a template that hangs or breaks fails the load
        return made

    @property
    def uses_template(self) -> bool:
        return self.chat_format == "template"

    def render(self, prompt: str) -> str:
        if self.chat_template is not None:
            return render_chat(self.chat_template, prompt, self.bos_token, self.eos_token, self.model_file)
        return self.completion_template.format(prompt=prompt)

    def segments(self, prompt: str) -> list[tuple[str, bool]]:
        """The model input for one user prompt as (text, is_template) pieces (see the module docstring)."""
        if self.chat_template is None:
            return [(self.completion_template.format(prompt=prompt), False)]
        return chat_segments(self.chat_template, [{"role": "user", "content": prompt}], self.bos_token,
                             self.eos_token, self.model_file)


    def check_context(self, n_prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        if n_prompt_tokens + max_tokens > n_ctx:
            raise UsageError(
                f"prompt of {n_prompt_tokens} tokens plus {max_tokens} new tokens exceeds the context of "
                f"{n_ctx}: raise n_ctx in the device profile or lower --max-tokens"
            )

    def hit_stop(self, decoded_tail: str) -> bool:
        return any(s in decoded_tail for s in self.stops)

    def trim(self, text: str) -> tuple[str, bool]:
        """The text cut at the first stop string, and whether one was found."""
        cut = min((text.index(s) for s in self.stops if s and s in text), default=None)
        return (text, False) if cut is None else (text[:cut], True)


def chat_segments(template: str, messages: list[dict[str, str]], bos_token: str, eos_token: str,
                  model_file: str = "the model") -> list[tuple[str, bool]]:
    """A conversation rendered by a chat template as (text, is_template) pieces: the template's own text, where
    special-token strings are control tokens, and each message's content, which is only ever text. A message the
    template leaves out is left out."""
    marks = [f"\ue000harness-message-{i}\ue001" for i in range(len(messages))]
    rendered = render_messages(template, [{**m, "content": mark} for m, mark in zip(messages, marks)], bos_token,
                               eos_token, model_file)
    pieces: list[tuple[str, bool]] = []
    rest = rendered
    for mark, message in zip(marks, messages):
        if rendered.count(mark) > 1:
            raise UsageError("the model's chat template repeats a message's text: harness cannot keep that text "
                             "apart from the template's control tokens; set [chat] format = \"completion\" in the "
                             "model manifest")
        before, found, after = rest.partition(mark)
        if found:
            pieces += [(before, True), (message["content"], False)]
            rest = after
    pieces.append((rest, True))
    return [(text, is_template) for text, is_template in pieces if text]
