"""Errors from searching the Hub and reading remote headers, each in words a user can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engines.errors import LlmTuiError


class HubError(LlmTuiError):
    """The Hub (or a mirror) could not answer what was asked."""


class HubUnreachable(HubError):
    """No connection, DNS failure or timeout: HF_ENDPOINT unreachable or no network."""


class HubAuthError(HubError):
    """A gated or private repo, and no token (or one without access)."""


class HubNotFound(HubError):
    """No such repo, revision or file."""


class HubRateLimited(HubError):
    """HTTP 429 after backing off: the Hub asks to wait."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@contextlib.contextmanager
def hub_call(endpoint: str, what: str) -> Iterator[None]:
    """Turn huggingface_hub's and the network's errors inside the block into ours, naming `what` was asked."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from engines.downloads.hf_repo import transport_errors

    try:
        yield
    except GatedRepoError:
        raise HubAuthError(
            f"{what} is gated: accept its licence on the Hub page, then set hf_token (Settings, or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise HubNotFound(f"{what} is not on {endpoint} (or is private: set hf_token)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 429:
            from engines.hub.range_reader import retry_after

            wait = retry_after(exc.response.headers if exc.response is not None else {}, default=60.0)
            raise HubRateLimited(
                f"{endpoint} is rate limiting requests (HTTP 429) and still was after backing off;"
                f" try again in {wait:.0f} s, or set hf_token (signed-in users get a higher limit)",
                wait,
            ) from None
        if status in (401, 403):
            raise HubAuthError(f"{endpoint} refused {what} (HTTP {status}): set hf_token, or check it") from None
        if status == 404:
            raise HubNotFound(f"{what} is not on {endpoint}") from None
        raise HubError(f"{endpoint} could not answer {what} (HTTP {status})") from None
    except Exception as exc:
        if isinstance(exc, (OSError, *transport_errors())):  # httpx's network errors are not OSError
            raise HubUnreachable(
                f"cannot reach {endpoint} ({type(exc).__name__}): check the network or HF_ENDPOINT"
            ) from None
        raise
