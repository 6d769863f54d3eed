"""Time, size and cancel limits for one chat-template render.

Jinja's sandbox stops a template from escaping, but not from looping for hours (two nested `range(100000)`
loops) or doubling a string until memory runs out. A template comes from a model file, so every render runs
under a Budget: every loop iteration and macro call checks the clock and the cancel Event (a step inside C,
such as `s * n`, cannot be interrupted, so each of those checks its result's size before it runs), and every
value the template builds is kept under the size limit, so no single step can allocate much more than that.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.utils

SECONDS = 2.0
"""How long one render may run."""
MAX_CHARS = 16 << 20
"""The largest prompt (and value inside the template) a render may build, in characters (16 MB)."""
MAX_INT = 1 << 20
"""The largest integer passed to a filter or method (a width, a count): far above any real template's."""
MAX_INT_BITS = 1 << 16
"""The largest integer the template may compute, in bits."""
_CHECK_EVERY = 1 << 14  # items walked between clock checks when sizing a large value
# Each item of a list or dict counts as this many characters: filters walk containers in Python, without a
# clock check per item, so a container is kept under ~130k items (range() allows 100k), a walk of a moment.
_ITEM = 128


class TemplateLimitError(BaseException):
    """A render ran out of time or size. BaseException, so `except Exception` in filter code cannot swallow it."""


class TemplateCancelled(BaseException):
    """The request was cancelled while its template was rendering."""


@dataclass(slots=True)
class Budget:
    """The limits of one render; `current()` is the one active on this thread."""

    seconds: float = SECONDS
    max_chars: int = MAX_CHARS
    cancel: threading.Event | None = None
    deadline: float = float("inf")
    sizes: dict[int, tuple[object, int]] = field(default_factory=dict)

    def check_time(self) -> None:
        """Raise if the render is cancelled or past its time."""
        if self.cancel is not None and self.cancel.is_set():
            raise TemplateCancelled("the request was cancelled while its chat template was rendering")
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the chat template ran past {self.seconds:g} s")

    def check_size(self, n: int) -> None:
        """Raise if `n` characters pass the size limit."""
        if n > self.max_chars:
            raise TemplateLimitError(f"the chat template produced more than {round(self.max_chars / (1 << 20)):,} MB")

    def check_value(self, value: object) -> None:
        """Raise if `value`, printed, would pass the size limit (each reference inside counted in full)."""
        if type(value) is str:
            if len(value) > self.max_chars:
                self.check_size(len(value))
        elif value is not None:
            self.check_size(size_of(value, self.max_chars, self))


_UNBOUNDED = Budget()  # compile time (constant folding) and anything outside a render: sizes only
_local = threading.local()


def current() -> Budget:
    """The budget of the render running on this thread."""
    budget: Budget | None = getattr(_local, "budget", None)
    return budget if budget is not None else _UNBOUNDED


_CONTAINERS = (list, tuple, set, frozenset, dict, jinja2.utils.Namespace)
_MAX_DEPTH = 100


def size_of(value: object, limit: int, budget: Budget | None = None, indent: int = 0) -> int:
    """About how many characters `value` prints as (repr of containers, with `indent` per nesting level);
    stops counting once past `limit`."""
    if isinstance(value, str):
        return len(value)
    return _Sizer(limit, budget, indent).size(value, 0)


class _Sizer:
    """One sizing walk; containers already sized in this render come from the budget's cache."""

    def __init__(self, limit: int, budget: Budget | None, indent: int) -> None:
        self.limit = limit
        self.budget = budget
        self.indent = indent
        self.walked = 0
        # The sandbox cannot change a list, tuple or dict, so a size stays true for the whole render;
        # the cache holds the object too, so its id is not reused by another.
        self.cache = budget.sizes if budget is not None and not indent else None

    def size(self, value: object, depth: int) -> int:
        if isinstance(value, (str, bytes)):
            return len(value) + 2
        if isinstance(value, int):
            return value.bit_length() // 3 + 2
        if not isinstance(value, _CONTAINERS):
            return 8
        cache = self.cache if not isinstance(value, jinja2.utils.Namespace) else None
        if cache is not None and id(value) in cache:
            return cache[id(value)][1]
        if depth >= _MAX_DEPTH:
            raise TemplateLimitError(f"the chat template nests values more than {_MAX_DEPTH} deep")
        items: Iterable[object]
        if isinstance(value, dict):
            items = chain.from_iterable(value.items())
        elif isinstance(value, jinja2.utils.Namespace):
            items = object.__getattribute__(value, "_Namespace__attrs").values()
        else:
            items = value
        total = 2
        pad = self.indent * (depth + 1)
        for item in items:
            if isinstance(item, str):  # the common case, without a call
                total += len(item) + _ITEM + pad
            else:
                total += self.size(item, depth + 1) + _ITEM + pad
            if total > self.limit:
                break  # past the limit: how far past does not matter
            self.walked += 1
            if self.budget is not None and self.walked % _CHECK_EVERY == 0:
                self.budget.check_time()
        if cache is not None:
            cache[id(value)] = (value, total)
        return total


# -- the clock: checked at every loop iteration and macro call ---------------------------------------------------


@jinja2.pass_context  # never folded at compile time: it must run at render time
def tick(context: Any, value: object = None) -> object:
    """Check the clock and the cancel Event; compiled into the start of every loop body and macro."""
    current().check_time()
    return value


def add_ticks(tree: jinja2.nodes.Template) -> jinja2.nodes.Template:
    """Insert a tick at the start of every loop, macro and call block body: the only ways a template repeats."""
    for node in tree.find_all((jinja2.nodes.For, jinja2.nodes.Macro, jinja2.nodes.CallBlock)):
        assert isinstance(node, (jinja2.nodes.For, jinja2.nodes.Macro, jinja2.nodes.CallBlock))
        call = jinja2.nodes.Filter(jinja2.nodes.Const(None), TICK, [], [], None, None)
        node.body.insert(0, jinja2.nodes.ExprStmt(call, lineno=node.lineno))
    return tree


TICK = "llm_tui_tick"
"""The filter name the tick is registered under."""


def run_limited(render: Callable[[], Iterator[str]], budget: Budget) -> str:
    """Run `render` (a chunk generator) under `budget` on this thread: the joined text, or TemplateLimitError."""
    budget.deadline = time.monotonic() + budget.seconds
    previous_budget = getattr(_local, "budget", None)
    _local.budget = budget
    try:
        parts: list[str] = []
        total = 0
        for chunk in render():
            total += len(chunk)
            budget.check_size(total)
            parts.append(chunk)
        return "".join(parts)
    finally:
        _local.budget = previous_budget


# -- sizes checked before a C call can allocate them -------------------------------------------------------------


def _check_int(value: object, budget: Budget) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"the chat template computed a number over {MAX_INT_BITS:,} bits")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checked_binop(operator: str, left: Any, right: Any, apply: Callable[[Any, Any], Any]) -> Any:
    """`left operator right`, refused when its result would pass the limits."""
    budget = current()
    if type(left) is str and type(right) is str:  # the common case: `'<|im_start|>' + role`
        budget.check_size(len(left) + len(right))
        return apply(left, right)
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _is_count(n) and not _is_count(seq) and not isinstance(seq, float):
                budget.check_size(size_of(seq, budget.max_chars, budget) * max(n, 0))
        if _is_count(left) and _is_count(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            _check_int(1 << (MAX_INT_BITS + 1), budget)
    elif operator == "**":
        if _is_count(left) and _is_count(right) and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            _check_int(1 << (MAX_INT_BITS + 1), budget)
    elif operator == "+":
        if not (_is_count(left) or isinstance(left, float)):
            budget.check_size(size_of(left, budget.max_chars, budget) + size_of(right, budget.max_chars, budget))
    elif operator == "%" and isinstance(left, str):
        budget.check_size(percent_size(left, right, budget))
    result = apply(left, right)
    _check_int(result, budget)
    return result


_PERCENT_SPEC = r"%(?:\([^)]*\))?[#0 +-]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]"


def percent_size(fmt: str, args: object, budget: Budget) -> int:
    """An upper bound on the length of `fmt % args`."""
    arg_size = size_of(args, budget.max_chars, budget)
    total = len(fmt)
    for width, precision in re.findall(_PERCENT_SPEC, fmt):
        if "*" in (width, precision):
            raise TemplateLimitError("the chat template used a '*' width in % formatting")
        total += int(width or 0) + int(precision or 0) + arg_size
        if total > budget.max_chars:
            break
    return total


def format_size(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> int:
    """An upper bound on the length of `fmt.format(*args, **kwargs)`."""
    largest = max((size_of(v, budget.max_chars, budget) for v in chain(args, kwargs.values())), default=0)
    total = 0
    for literal, field_name, spec, _conversion in string.Formatter().parse(fmt):
        total += len(literal)
        if field_name is None:
            continue
        if spec and "{" in spec:
            raise TemplateLimitError("the chat template used a nested format spec")
        digits = "".join(c if c.isdigit() else " " for c in spec or "").split()
        total += largest + sum(int(d) for d in digits)
        if total > budget.max_chars:
            break
    return total


def checked_concat(parts: Any) -> str:
    """`"".join(parts)` for block captures, macro bodies and `~`, refused past the size limit."""
    budget = current()
    texts: list[str] = []
    total = 0
    for part in parts:
        if not isinstance(part, str):
            budget.check_size(total + size_of(part, budget.max_chars, budget))
            part = str(part)
        total += len(part)
        budget.check_size(total)
        texts.append(part)
    return "".join(texts)


def checked_finalize(value: Any) -> Any:
    """What `{{ value }}` prints, refused before it is turned into a string past the size limit."""
    if type(value) is not str or len(value) > MAX_CHARS:
        current().check_value(value)
    return value


def _materialize(value: Any) -> Any:
    return value if isinstance(value, (str, list, tuple, dict, set, frozenset)) else list(value)


def _count_of(text: str, old: str) -> int:
    return len(text) + 1 if old == "" else text.count(old)


_ITERATORS = frozenset(
    {"map", "select", "reject", "selectattr", "rejectattr", "batch", "slice", "unique", "groupby", "list", "sort"}
    | {"dictsort", "sum", "min", "max", "join", "items"}
)
_AMPLIFIERS = frozenset(
    {"join", "replace", "expandtabs", "translate", "indent", "wordwrap", "format", "tojson", "pprint", "sum"}
    | {"generate_lorem_ipsum"}
)


def _estimate(name: str, value: Any, args: list[Any], kwargs: dict[str, Any], budget: Budget) -> int:
    """An upper bound on the size of filter or method `name` applied to value, for the ones that amplify."""
    limit = budget.max_chars
    if name == "join" and isinstance(value, str):  # str.join(items): value is the separator
        items = args[0] if args else ()
        return size_of(items, limit, budget) + len(value) * len(items)
    if name == "join":  # the filter: join(items, d="")
        sep = args[0] if args else kwargs.get("d", "")
        return size_of(value, limit, budget) + len(str(sep)) * len(value)
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        new = str(args[1])
        n = _count_of(value, str(args[0]))
        count = args[2] if len(args) > 2 else kwargs.get("count")
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        return len(value) + n * len(new)
    if name == "expandtabs" and isinstance(value, str):
        tab = args[0] if args else kwargs.get("tabsize", 8)
        return len(value) + value.count("\t") * (tab if _is_count(tab) else 8)
    if name == "translate" and isinstance(value, str):
        table = args[0] if args else {}
        widest = max((size_of(v, limit, budget) for v in table.values()), default=1) if isinstance(table, dict) else 1
        return len(value) * max(widest, 1)
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width if _is_count(width) else 4
        return len(str(value)) + (str(value).count("\n") + 1) * per_line
    if name == "wordwrap":
        width = args[0] if args else kwargs.get("width", 79)
        wrap = (args[2] if len(args) > 2 else kwargs.get("wrapstring")) or "\n"
        lines = len(str(value)) // max(width if _is_count(width) else 1, 1) + 1
        return len(str(value)) + lines * len(str(wrap))
    if name == "format" and isinstance(value, str):
        return percent_size(value, kwargs or tuple(args), budget)
    if name == "tojson":
        indent = args[1] if len(args) > 1 else kwargs.get("indent")
        width = indent if isinstance(indent, int) else 0
        return size_of(value, limit, budget, width) * (6 if kwargs.get("ensure_ascii") else 1)
    if name == "pprint":
        return size_of(value, limit, budget, 1)
    if name == "generate_lorem_ipsum":
        n = args[0] if args else kwargs.get("n", 5)
        most = args[2] if len(args) > 2 else kwargs.get("max", 100)
        return (n if _is_count(n) else 5) * (most if _is_count(most) else 100) * 12
    if name == "sum":
        start = args[1] if len(args) > 1 else kwargs.get("start", 0)
        if not isinstance(start, (int, float)):  # concatenating lists this way is quadratic, in one C call
            raise TemplateLimitError("the chat template summed sequences (use join or a loop)")
    return 0


def check_call(name: str, value: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse a filter or method call whose numbers or result size would pass the limits, before it runs."""
    budget = current()
    total = 0
    for arg in chain((value,), args, kwargs.values()):
        if type(arg) is str:  # the common case, without a call
            total += len(arg)
            continue
        if _is_count(arg) and abs(arg) > MAX_INT:
            raise TemplateLimitError(f"the chat template passed {arg:,} to {name} (the limit is {MAX_INT:,})")
        total += size_of(arg, budget.max_chars, budget)
    budget.check_size(total)
    if name in _ITERATORS and isinstance(value, str):  # a filter looping over each character, in Python
        budget.check_size(len(value) * _ITEM)
    if name in _AMPLIFIERS:
        budget.check_size(_estimate(name, value, args, kwargs, budget))


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` (a Jinja filter or global) with its inputs and result checked against the current budget."""
    passes_context = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        lead, rest = (args[:1], list(args[1:])) if passes_context else ((), list(args))
        if rest and name in ("join", "sum"):
            rest[0] = _materialize(rest[0])  # a generator would be consumed by the estimate
        check_call(name, rest[0] if rest else None, rest[1:], kwargs)
        result = func(*lead, *rest, **kwargs)
        if type(result) is not str or len(result) > MAX_CHARS:
            current().check_value(result)
        return result

    return guarded


def checked_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], invoke: Callable[..., Any]) -> Any:
    """A method or global called from the template (`invoke(obj, *args, **kwargs)`), checked like a filter."""
    name = getattr(obj, "__name__", "")
    owner = getattr(obj, "__self__", None)
    if name == "join" and isinstance(owner, str) and args:
        args = (_materialize(args[0]), *args[1:])  # a generator would be consumed by the estimate
    check_call(name, owner if isinstance(owner, str) else None, list(args), kwargs)
    result = invoke(obj, *args, **kwargs)
    current().check_value(result)
    return result


def guard_str_format(fmt: str, is_map: bool, wrapped: Callable[..., str]) -> Callable[..., str]:
    """The sandbox's `str.format`/`format_map` wrapper, refused when its result would pass the size limit."""

    def guarded(*args: Any, **kwargs: Any) -> str:
        budget = current()
        mapping = args[0] if is_map and args and isinstance(args[0], dict) else kwargs
        budget.check_size(format_size(fmt, () if is_map else args, mapping, budget))
        result = wrapped(*args, **kwargs)
        budget.check_value(result)
        return result

    return guarded
