"""Limits on the JSON schemas a request may ask a reply to follow, checked in pure Python before any engine sees one.

llama.cpp turns a schema into a grammar whose size grows with the numbers in it: `maxLength: 10000` nests ten
thousand optional groups, which its grammar parser refuses (and llama-cpp-python then samples with a null grammar:
SIGSEGV). The limits below are far above what a real reply needs and well under where llama.cpp gives up (it parses
1,000 nested repetitions, not 1,001, measured on 0.3.36). Every engine checks them, so a schema that works on one
works on all. What a list of limits misses is caught by the isolated test run in adapters/llama_cpp_grammar.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engines.errors import BadRequest

MAX_SCHEMA_BYTES = 64 * 1024
"""The schema's JSON text, in UTF-8 bytes."""
MAX_DEPTH = 64
"""Nesting of JSON objects and arrays in the schema document (a subschema under `properties` is two levels)."""
MAX_REPEAT = 500
"""minLength, maxLength, minItems, maxItems, minProperties, maxProperties, and {m,n} counts in a pattern."""
MAX_ENUM = 256
"""Values in one `enum` (every country code fits): each is a live grammar alternative that every sampled token is
checked against, over the whole vocabulary; 300 short values took up to 1 s a token, 1,000 took 2 s."""
MAX_PATTERN = 1000
"""Characters in one `pattern`."""
MAX_PATTERN_COST = 2000
"""Characters a pattern's grammar spells out, nested counts multiplied: `(a{0,40}){0,40}` is 1,600 (a nested
`(a{0,500}){0,500}` kept llama.cpp's converter busy past a minute)."""
MAX_NESTED_RANGE = 10
"""The largest {m,n} that may repeat a group whose own text varies in length: every way of splitting the reply
among the repetitions is a grammar stack, so `([a-z]{0,3}){0,30}` ran past 40 s in 8 sampled tokens, while
{0,8} took 2.8 s and `([a-z]+ ?){0,10}` 3.8 s (a whole test run, 2 busy cores)."""

_REPEAT_KEYS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


class SchemaRefused(BadRequest):
    """A JSON schema over a limit, or one whose grammar failed its test run; the message names where and why."""


def check_schema_text(text: str) -> dict[str, Any]:
    """The schema parsed from `text`, within every limit; SchemaRefused naming the field and the limit otherwise."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SCHEMA_BYTES:
        raise SchemaRefused(f"json_schema: the schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}")
    try:
        schema = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer past Python's 4,300-digit limit
        raise SchemaRefused(f"the JSON schema is not valid JSON: {exc}") from None
    except RecursionError:  # json's C parser recurses once per level; the size cap still allows 64K levels
        raise SchemaRefused(f"json_schema: the schema nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(schema, dict):
        raise SchemaRefused("the JSON schema must be a JSON object")
    check_schema(schema)
    return schema


def check_schema(schema: object) -> None:
    """SchemaRefused naming the first value over a limit (as a JSON pointer) and the limit; None when all are within."""
    # Iterative, not recursive: the walk must not itself be the thing a deep schema breaks.
    stack: list[tuple[object, str, int]] = [(schema, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise SchemaRefused(f"json_schema: {path or '/'} nests deeper than {MAX_DEPTH} levels")
            _check_keywords(node, path)
            stack.extend((value, f"{path}/{_escape(str(key))}", depth + 1) for key, value in node.items())
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise SchemaRefused(f"json_schema: {path or '/'} nests deeper than {MAX_DEPTH} levels")
            stack.extend((value, f"{path}/{i}", depth + 1) for i, value in enumerate(node))


def _check_keywords(node: dict[Any, Any], path: str) -> None:
    for key in _REPEAT_KEYS:
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_REPEAT:
            raise SchemaRefused(f"json_schema: {path}/{key} is {_show(value)}; the limit is {MAX_REPEAT}")
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > MAX_ENUM:
        raise SchemaRefused(f"json_schema: {path}/enum has {len(enum)} values; the limit is {MAX_ENUM}")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN:
            raise SchemaRefused(f"json_schema: {path}/pattern is {len(pattern)} characters; the limit is {MAX_PATTERN}")
        for match in _QUANTIFIER.finditer(pattern):
            count = max(int(n) for n in match.groups() if n)
            if count > MAX_REPEAT:
                raise SchemaRefused(
                    f"json_schema: {path}/pattern repeats {match.group(0)}; the limit is {MAX_REPEAT} repetitions"
                )
        cost, nested = scan_pattern(pattern)
        if cost > MAX_PATTERN_COST:
            raise SchemaRefused(
                f"json_schema: {path}/pattern spells out {cost} characters with its repetitions; "
                f"the limit is {MAX_PATTERN_COST}"
            )
        if nested > MAX_NESTED_RANGE:
            raise SchemaRefused(
                f"json_schema: {path}/pattern repeats a group of varying length up to {nested} times; "
                f"the limit is {MAX_NESTED_RANGE}"
            )
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        # A reference outside the document would be fetched (or, in llama.cpp's converter, assert): refuse it by name.
        raise SchemaRefused(
            f"json_schema: {path}/$ref is {ref[:80]!r}; only references inside the schema (#/...) are allowed"
        )


def pattern_cost(pattern: str) -> int:
    """About how many atoms the grammar of `pattern` spells out: counts multiply when groups nest, add otherwise."""
    return scan_pattern(pattern)[0]


def scan_pattern(pattern: str) -> tuple[int, int]:
    """The pattern's cost (see pattern_cost), and the largest count {m,n} (n > m) that repeats a group which can
    itself match text of different lengths (the ambiguity that makes llama.cpp's grammar stacks explode)."""
    # Per open group: [cost so far, cost of the last atom, holds variable-length text, last atom is variable].
    stack: list[list[int]] = [[0, 0, 0, 0]]
    worst = 0
    i, n = 0, len(pattern)
    while i < n:
        char, atom, variable = pattern[i], 1, 0
        if char == "\\":
            i += 2
        elif char == "[":  # a class is one atom, whatever it holds ( "(", "{" and "]" first included)
            i += 2 if pattern[i + 1 : i + 2] == "]" else 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        elif char == "(":
            stack.append([0, 0, 0, 0])
            i += 1
            if pattern[i : i + 2] in ("?:", "?=", "?!"):
                i += 2
            continue
        elif char == ")" and len(stack) > 1:
            group = stack.pop()
            atom, variable = max(group[0], 1), group[2]
            i += 1
        elif char == "{" and (match := _QUANTIFIER.match(pattern, i)):
            low, high = match.group(1), match.group(2)
            count = max(int(g) for g in (low, high) if g)
            ranged = match.group(0).count(",") == 1 and (not high or int(high) > int(low))
            top = stack[-1]
            if ranged and top[3]:
                worst = max(worst, count)
            top[0] += top[1] * max(count - 1, 0)
            top[1] *= count
            top[2] |= int(ranged)
            i = match.end()
            continue
        else:
            i += 1
            if char in "|*+?":  # the text's length varies (an alternation costs the sum: an upper bound)
                stack[-1][2] = 1
                continue
            if char in "^$":
                continue
        top = stack[-1]
        top[0] += atom
        top[1] = atom
        top[2] |= variable
        top[3] = variable
    while len(stack) > 1:  # an unclosed group: count what it holds
        inner = stack.pop()
        stack[-1][0] += inner[0]
    return stack[0][0], worst


def _show(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _escape(key: str) -> str:
    """A key as a JSON pointer segment (RFC 6901), so the path in a message can be followed."""
    return key.replace("~", "~0").replace("/", "~1")
