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
- conversations: a model input is a user prompt alone or a conversation (`messages`: system, user and assistant
  turns ending in a user turn). A system turn goes where the template's own convention puts it; a template with no
  system role (one that refuses it, or drops it) gets it folded into the first user turn, as transformers'
  templates for such models do, and `system_folded` says so for the record. A completion frame renders the turns
  as a transcript through `completion_template`.
- `stop`: strings that end a generation (e.g. "\\nUser:" for a base model that keeps writing the
  dialogue): checked on the last tokens while streaming and cut from the final text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from harness.errors import UsageError

STOP_WINDOW_TOKENS = 16  # decoded tail checked for stop strings while streaming
PROBE_PROMPT = "Hello, how are you?"  # rendered once when a model loads
ROLES = ("system", "user", "assistant")

# What a backend is given: one user prompt, or a conversation of {"role", "content"} turns ending in a user turn.
ModelInput = str | Sequence[Mapping[str, str]]


def as_messages(prompt: ModelInput) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The system turn folded into the first user turn (for a template without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], messages[1:]
    i = next((k for k, m in enumerate(rest) if m["role"] == "user"), None)
    if i is None:
        return rest
    return [*rest[:i], {"role": "user", "content": f"{system}\n\n{rest[i]['content']}"}, *rest[i + 1:]]


@lru_cache(maxsize=64)
def template_takes_system(template: str, bos_token: str, eos_token: str) -> bool:
    """Whether a chat template renders a system turn (its own way, which may itself be folding it): False when
    it raises for one or leaves its text out."""
    mark = "\ue000harness-system\ue001"
    try:
        out = render_messages(template, [{"role": "system", "content": mark}, {"role": "user", "content": "hi"}],
                              bos_token, eos_token)
    except UsageError:
        return False
    return mark in out


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

    def render(self, prompt: ModelInput) -> str:
        if self.chat_template is not None:
            return render_messages(self.chat_template, self.fitted(prompt), self.bos_token, self.eos_token,
                                   self.model_file)
        return self._transcript(as_messages(prompt))

    def segments(self, prompt: ModelInput) -> list[tuple[str, bool]]:
        """The model input for a user prompt or a conversation as (text, is_template) pieces (see the module
        docstring)."""
        if self.chat_template is None:
            return [(self._transcript(as_messages(prompt)), False)]
        return chat_segments(self.chat_template, self.fitted(prompt), self.bos_token, self.eos_token,
                             self.model_file)

    def system_folded(self, prompt: ModelInput) -> bool:
        """Whether this input's system turn is folded into its first user turn (the template has no system role;
        a completion frame always writes it as plain text before the transcript)."""
        messages = as_messages(prompt)
        if not messages or messages[0]["role"] != "system":
            return False
        return self.chat_template is None or not template_takes_system(self.chat_template, self.bos_token,
                                                                        self.eos_token)

    def fitted(self, prompt: ModelInput) -> list[dict[str, str]]:
        """The messages as this template can take them (a system turn folded where it has no system role)."""
        messages = as_messages(prompt)
        return fold_system(messages) if self.system_folded(messages) else messages

    def _transcript(self, messages: list[dict[str, str]]) -> str:
        """A conversation through the completion frame: each user turn framed, each assistant turn after it."""
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(m["content"] + "\n\n")
            elif m["role"] == "user":
                parts.append(self.completion_template.format(prompt=m["content"]))
            else:
                parts.append(" " + m["content"].strip() + "\n")
        return "".join(parts)


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
