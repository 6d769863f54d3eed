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
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ReplyNotValid(f"the reply does not follow the schema at {where}: {error.message}")
    return value
