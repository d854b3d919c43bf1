"""Rendering a model's chat template (untrusted Jinja from a GGUF or an ONNX export) within bounds.

The template runs in jinja2's immutable sandbox (no attribute tricks, no mutation, `range` capped), and on top
of that within a time bound (a per-thread trace checks the deadline on every line the template runs, so nested
loops end), an output bound (the text is streamed and counted), and size bounds on the operations that build
big values at once (`*`, `**`, `%`, `+` on strings and lists; over-large widths and counts passed to a filter or
a method; strings and lists held by the template's own variables). Any failure, bound or not, is a `TemplateFailure`
carrying one line that says what went wrong; `prompt_format` turns it into the user's error naming the file.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable, Sized
from types import FrameType
from typing import Any

RENDER_TIME_S = 2.0  # a real chat template renders in milliseconds
MAX_OUTPUT_CHARS = 1_000_000  # plus 8 x the prompt's length
MAX_VALUE_CHARS = 8_000_000  # the largest string or list one operation may build (a prompt beyond it fits no context)
MAX_COUNT = 1_000_000  # the largest integer a filter or method may take (a width, a repeat count)
_TEMPLATE_FILE = "<template>"
_WIDE = re.compile(r"%[-+ #0]*\d*\.?\d{7,}|\{[^{}]*:[^{}]*\d{7,}")


class TemplateFailure(Exception):
    """The template did not render: `reason` is one line for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _check_count(values: Any) -> None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_COUNT:
            raise TemplateFailure(f"it passes {_short(v)} to a filter or method (at most {MAX_COUNT:,})")


def _check_format(spec: Any) -> None:
    """A printf or str.format pattern with a width or precision of millions of characters."""
    if isinstance(spec, str) and _WIDE.search(spec):
        raise TemplateFailure("it formats with a width of millions of characters")


def _short(v: int) -> str:
    return str(v) if v.bit_length() < 64 else f"a {v.bit_length()}-bit number"


def _size(v: Any) -> int:
    return len(v) if isinstance(v, Sized) and not isinstance(v, dict) else 0


def _bounded(f: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that refuses over-large counts (jinja's pass_context markers are kept by functools.wraps)."""
    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        _check_count([*args[1:], *kwargs.values()])
        if sum(_size(v) for a in args if isinstance(a, (list, tuple)) for v in a if isinstance(v, str)) > MAX_OUTPUT_CHARS:
            raise TemplateFailure(f"it passes more than {MAX_OUTPUT_CHARS:,} characters to a filter")
        if f.__name__ == "do_format":
            _check_format(next((a for a in args if isinstance(a, str)), None))
        return f(*args, **kwargs)
    return call


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2.ext
    from jinja2.compiler import CodeGenerator
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Concat(CodeGenerator):
        """`a ~ b` joined by the environment, which counts first (jinja joins it in its own module)."""

        def visit_Concat(self, node: Any, frame: Any) -> None:
            self.write("environment.bounded_concat((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%", "+"})
        code_generator_class = Concat

        def bounded_concat(self, values: tuple[Any, ...]) -> str:
            parts = [str(v) for v in values]
            if sum(map(len, parts)) > MAX_VALUE_CHARS:
                raise TemplateFailure(f"it builds a value of more than {MAX_VALUE_CHARS:,} items")
            return "".join(parts)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right, MAX_VALUE_CHARS)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _check_count([*args, *kwargs.values()])
            if getattr(__obj, "__name__", "") in ("format", "format_map"):  # jinja wraps str.format on access
                _check_format(getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None))
            return super().call(__context, __obj, *args, **kwargs)

    env = Bounded(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters = {name: _bounded(f) for name, f in env.filters.items()}
    env.filters["tojson"] = _bounded(_tojson)
    env.globals.pop("lipsum", None)  # n paragraphs of filler: no chat template needs it
    return env


def _check_binop(operator: str, left: Any, right: Any, cap: int) -> None:
    if operator == "*":
        n = right if isinstance(right, int) else left if isinstance(left, int) else 1
        if isinstance(n, int) and max(_size(left), _size(right)) * n > cap:
            raise TemplateFailure(f"it builds a value of more than {cap:,} items")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and \
            max(1, left.bit_length()) * right > 64 * MAX_COUNT:
        raise TemplateFailure("it raises a number to a huge power")
    elif operator == "+" and _size(left) + _size(right) > cap:
        raise TemplateFailure(f"it builds a value of more than {cap:,} items")
    elif operator == "%":
        _check_format(left)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    """The template compiled once (before the trace starts: compiling is bounded by the template's size)."""
    try:
        return _environment().from_string(template)
    except RecursionError:
        raise TemplateFailure("it nests without end") from None
    except Exception as exc:  # a syntax error, or whatever else the file's text makes jinja raise
        raise TemplateFailure(f"{type(exc).__name__}: {exc}") from None


def _tracer(deadline: float, cap: int) -> Callable[[FrameType, str, Any], Any]:
    """A trace function that ends the render past the deadline or when a template variable outgrows the cap."""
    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise TemplateFailure(f"it runs for more than {RENDER_TIME_S:g} s")
        if event == "line" and frame.f_code.co_filename == _TEMPLATE_FILE and \
                any(_size(v) > cap for v in frame.f_locals.values() if isinstance(v, (str, list, tuple))):
            raise TemplateFailure(f"it builds a value of more than {cap:,} items")
        return trace
    return trace


def render(template: str, variables: dict[str, Any], prompt_chars: int) -> str:
    """The template rendered with `variables`, within the bounds; TemplateFailure otherwise."""
    cap = MAX_OUTPUT_CHARS + 8 * prompt_chars
    compiled = _compiled(template)
    before = sys.gettrace()
    sys.settrace(_tracer(time.monotonic() + RENDER_TIME_S, cap))
    try:
        parts, size = [], 0
        for chunk in compiled.generate(**variables):
            size += len(chunk)
            if size > cap:
                raise TemplateFailure(f"it writes more than {cap:,} characters")
            parts.append(chunk)
        return "".join(parts)
    except TemplateFailure:
        raise
    except RecursionError:
        raise TemplateFailure("it recurses without end") from None
    except Exception as exc:  # the template is data from the file: whatever it raises is a broken template
        raise TemplateFailure(f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.settrace(before)
