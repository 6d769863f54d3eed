"""The one error the fleet code raises: a host, its answer or an admin action failed; the text says which and why."""

from __future__ import annotations

from engines.errors import LlmTuiError


class FleetError(LlmTuiError):
    """A fleet host could not be read or refused an action; the text names the host where one is known."""
