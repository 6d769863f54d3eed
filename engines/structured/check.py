"""Structured output: a reply meant to follow a JSON schema is checked against it, and what is wrong is said."""

from __future__ import annotations

import json
from typing import Any

from engines.errors import LlmTuiError


class ReplyNotValid(LlmTuiError):
    """The reply is not JSON, or not JSON that the schema allows."""


def check_reply(text: str, schema: dict[str, Any]) -> Any:
    """The reply parsed as JSON when it follows `schema`; ReplyNotValid naming the first problem otherwise."""
    import jsonschema

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplyNotValid(f"the reply is not JSON ({exc.msg} at character {exc.pos})") from None
    except (RecursionError, ValueError):  # nesting past the parser's stack, or an integer of thousands of digits
        raise ReplyNotValid("the reply is not JSON this can check (nested too deep or a number too long)") from None
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except RecursionError:  # a reply nested deeper than the checker recurses (a remote engine follows no grammar)
        raise ReplyNotValid("the reply nests too deep to check against the schema") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ReplyNotValid(f"the reply does not follow the schema at {where}: {error.message}")
    return value
