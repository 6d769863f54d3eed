"""Render chat templates (Hugging Face Jinja dialect) in a sandbox.

Templates come from model files, so they are untrusted code: they run in
Jinja's ImmutableSandboxedEnvironment with the same extras Hugging Face
transformers provides (`raise_exception`, `strftime_now`, a `tojson` that does
not escape HTML, loop controls and the `{% generation %}` block), so a template
written for transformers renders the same text here. Each render also runs under engines.templates.limits:
a time limit, a size limit on the prompt and on every value the template builds, and the request's cancel.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import jinja2
import jinja2.compiler
import jinja2.exceptions
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.sandbox

from engines.errors import BadRequest, Cancelled, ChatTemplateError
from engines.templates import limits as limits
from engines.types import ChatMessage, Tool

_BUILTIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

CHOOSABLE: dict[str, str] = {
    "chatml": "ChatML",
    "llama3": "Llama 3",
    "gemma3": "Gemma",
    "base-qa": "plain Q/A",
}
"""Built-in templates a user may choose for a GGUF (the launch dialog), with their short labels."""

TEMPLATE_STOPS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_end|>",),
    "llama3": ("<|eot_id|>",),
    "gemma3": ("<end_of_turn>",),
    "base-qa": ("\nQuestion:",),
}
"""Turn markers that end a reply under each built-in template (a model's own end token may differ)."""

# Family id or GGUF architecture prefix -> the built-in template that family was trained on.
# Plain "llama" is left out: Llama 2, Mistral and TinyLlama share that architecture but not a template.
_FAMILY_TEMPLATES = (
    ("gemma", "gemma3"),
    ("llama-3", "llama3"),
    ("llama3", "llama3"),
    ("deepseek-r1-distill-llama", "llama3"),
    ("qwen", "chatml"),
    ("smollm", "chatml"),
)

NO_TEMPLATE = "the file has no chat template: choose one in the launch dialog (Enter on the model in F2)"
"""What to do when a GGUF carries no template and none was chosen or known from the catalog."""


class _TemplateRaised(Exception):
    """Raised by the template's own `raise_exception(...)`: the messages do not fit it."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes <, >, & for HTML; chat prompts need the raw text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationBlock(jinja2.ext.Extension):
    """Accept `{% generation %}...{% endgeneration %}` (transformers' assistant mask marker) and render its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Callable[[], str]) -> str:
        return caller()


class _LimitedCodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles `a ~ b` to a size-checked join: Jinja's own is a plain str join the sandbox cannot intercept."""

    @jinja2.compiler.optimizeconst
    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _LimitedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The sandbox with every operator, call, join and printed value checked against the render's budget."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    concat = staticmethod(limits.checked_concat)  # block captures and macro bodies
    checked_concat = staticmethod(limits.checked_concat)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused when the result would pass the limits."""
        if operator == "+" and type(left) is str and type(right) is str:  # the common case, kept fast
            result: str = left + right  # at most twice the limit: both sides are within it
            if len(result) > limits.MAX_CHARS:
                limits.current().check_size(len(result))
            return result
        return limits.checked_binop(operator, left, right, self.binop_table[operator])

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a method or global from the template, with its numbers and result size checked."""
        if not __self.is_safe_callable(__obj):
            raise jinja2.exceptions.SecurityError(f"{__obj!r} is not safely callable")
        return limits.checked_call(__obj, args, kwargs, __context.call)

    def _parse(self, source: str, name: str | None, filename: str | None) -> jinja2.nodes.Template:
        # Jinja's hook between parsing and code generation: where the clock checks are put into loops and macros.
        return limits.add_ticks(super()._parse(source, name, filename))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's `str.format` wrapper, with the result's size bounded before it is built."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        return limits.guard_str_format(value.__self__, value.__name__ == "format_map", wrapped)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = _LimitedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
        finalize=limits.checked_finalize,
    )
    env.filters["tojson"] = _tojson
    env.filters = {name: limits.guard_filter(name, func) for name, func in env.filters.items()}
    env.filters[limits.TICK] = limits.tick
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=32)
def compile_template(template: str) -> jinja2.Template:
    """Compile a chat template once; ChatTemplateError if it does not parse."""
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat template does not parse (line {exc.lineno}): {exc.message}") from None
    except limits.TemplateLimitError as exc:  # a constant folded at compile time, e.g. `'x' | center(10**7)`
        raise ChatTemplateError(str(exc)) from None


def template_ast(template: str) -> jinja2.nodes.Template:
    """A template's syntax tree, parsed by the sandbox (for jinja2.meta questions such as "does it read tools")."""
    return _environment().parse(template)


def render_chat(
    template: str,
    messages: Sequence[ChatMessage],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
    cancel: threading.Event | None = None,
    seconds: float = limits.SECONDS,
    tools: Sequence[Tool] = (),
) -> str:
    """Render `messages` (and the `tools` the model may call) into a prompt; BadRequest if the template rejects
    them, ChatTemplateError if it is broken, runs past `seconds` or builds more than a few MB; Cancelled if
    `cancel` is set meanwhile."""
    compiled = compile_template(template)
    context: dict[str, Any] = {
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    if tools or any(m.tool_calls or m.role == "tool" for m in messages):
        from engines.tools.prompt import template_context

        context["messages"], tool_list = template_context(template, messages, tools)
        if tool_list is not None:
            context["tools"] = tool_list
    else:
        context["messages"] = [{"role": m.role, "content": m.content} for m in messages]
    # A long conversation may legitimately pass the fixed limit: allow a few times the input's own size.
    given = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
    given += len(bos_token) + len(eos_token) + sum(len(t.parameters) + len(t.description) for t in tools)
    budget = limits.Budget(seconds=seconds, max_chars=max(limits.MAX_CHARS, 4 * given), cancel=cancel)
    try:
        return limits.run_limited(lambda: compiled.generate(context), budget)
    except limits.TemplateLimitError as exc:
        raise ChatTemplateError(str(exc)) from None
    except limits.TemplateCancelled as exc:  # Stop pressed while it rendered: the engine ends the reply as cancelled
        raise Cancelled(str(exc)) from None
    except MemoryError:
        raise ChatTemplateError("the chat template ran out of memory") from None
    except _TemplateRaised as exc:
        raise BadRequest(f"the model's chat template rejected the conversation: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise ChatTemplateError(f"chat template tried an unsafe operation and was stopped: {exc}") from None
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"chat template failed: {exc.message or type(exc).__name__}") from None
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError) as exc:
        # A template bug (e.g. indexing messages[0] of an empty list) must not crash the worker.
        raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from None


def load_builtin_template(name: str) -> str:
    """The text of `engines/catalog/templates/{name}.jinja`; ChatTemplateError if there is none."""
    if not _BUILTIN_NAME.match(name):
        raise ChatTemplateError(f"invalid built-in chat template name {name!r}")
    resource = resources.files("engines.catalog").joinpath("templates").joinpath(f"{name}.jinja")
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatTemplateError(f"no built-in chat template named {name!r}") from None


def family_template(*names: str | None) -> str | None:
    """The built-in template a model family or architecture ("gemma-3", "qwen2") was trained on, if known."""
    for name in names:
        key = (name or "").lower()
        for prefix, template in _FAMILY_TEMPLATES:
            if key.startswith(prefix):
                return template
    return None


def pick_template(file_template: str | None, catalog_template: str | None, chosen: str | None) -> tuple[str, str]:
    """(template text, how to name it) from the choice, else the file's, else the catalog's; ("", "") if none."""
    if chosen:
        return load_builtin_template(chosen), f"{CHOOSABLE.get(chosen, chosen)} (chosen at launch)"
    if file_template:
        return file_template, "the file's own"
    if catalog_template:
        return catalog_template, "the catalog's"
    return "", ""
