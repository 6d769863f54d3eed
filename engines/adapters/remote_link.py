"""One OpenAI-compatible endpoint's HTTP client and its rules: connect retries, error texts, the key masked.

The API key travels only in the Authorization header to the endpoint itself (redirects are never followed) and is
masked out of every message this module writes.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from typing import TYPE_CHECKING, Any

from engines.errors import BadRequest, LlmTuiError, ModelNotFound, RemoteEndpointError
from engines.secret import MASK, Secret

if TYPE_CHECKING:
    import httpx

_MAX_ERROR_BODY = 64 * 1024  # bytes of an error reply read for its message


class Link:
    """One endpoint's HTTP client and the rules for talking to it: connect retries, error texts, key masking."""

    def __init__(
        self, endpoint: str, api_key: Secret | None, connect_s: float, read_s: float, retries: int, backoff_s: float
    ) -> None:
        import httpx  # here, not at import: httpx pulls in its CLI's rich when click is installed

        self.endpoint = endpoint.rstrip("/")
        self.shown = re.sub(r"(?<=://)[^/@]*@", "", self.endpoint)  # no user:password@ in messages
        self.key = api_key
        self.connect_s, self.read_s, self.retries, self.backoff_s = connect_s, read_s, retries, backoff_s
        headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key is not None else {}
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s),
            follow_redirects=False,  # the key must never follow a redirect to another origin
        )

    def clean(self, text: str) -> str:
        """One line, at most 300 characters, with the key masked."""
        secret = self.key.reveal() if self.key is not None else ""
        if secret:
            text = text.replace(secret, MASK)
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:299] + "…"

    def send(self, method: str, path: str, body: Any = None, cancel: threading.Event | None = None) -> httpx.Response:
        """Send a request and return its streaming response (status 2xx); raise LlmTuiError otherwise.

        Only connect errors are retried: then nothing reached the server. Once a request is sent it is never
        repeated, since the server may already be generating. A `cancel` set during a backoff stops the retries.
        """
        import httpx

        request = self.client.build_request(
            method, self.endpoint + path, json=body, headers={"Accept": "text/event-stream, application/json"}
        )
        pause = cancel if cancel is not None else threading.Event()
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.send(request, stream=True)
                break
            except httpx.ConnectError as exc:  # nothing reached the server: safe to try again
                if attempt == self.retries or pause.wait(self.backoff_s * 2**attempt):
                    raise RemoteEndpointError(self.clean(f"cannot reach {self.shown}: {reason(exc)}")) from None
            except httpx.ConnectTimeout:
                raise RemoteEndpointError(f"cannot reach {self.shown}: no connection in {self.connect_s:g} s") from None
            except httpx.TimeoutException:
                raise RemoteEndpointError(f"{self.shown} did not answer {path} within {self.read_s:g} s") from None
            except httpx.HTTPError as exc:
                raise RemoteEndpointError(self.clean(f"request to {self.shown} failed: {reason(exc)}")) from None
        if resp.is_success:
            return resp
        try:
            raise self.failure(resp)
        finally:
            resp.close()

    def failure(self, resp: httpx.Response) -> LlmTuiError:
        """The error an HTTP error answer stands for, with the server's own message where it is safe to show."""
        import httpx

        status, where = resp.status_code, self.shown
        if resp.is_redirect:
            target = re.sub(r"(?<=://)[^/@]*@", "", resp.headers.get("location", "?"))
            return RemoteEndpointError(self.clean(f"{where} redirects to {target}; not followed (give the final URL)"))
        if status in (401, 403):  # the server's text may quote the key: leave it out
            if self.key is None:
                return RemoteEndpointError(f"{where} wants an API key (HTTP {status}) and none is set")
            return RemoteEndpointError(f"{where} refused the API key (HTTP {status})")
        body = b""
        with contextlib.suppress(httpx.HTTPError):
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) >= _MAX_ERROR_BODY:
                    break
        message = error_text(json_or_none(body)) or body.decode("utf-8", "replace").strip() or resp.reason_phrase
        if status in (400, 422):
            return BadRequest(self.clean(f"{where} rejected the request: {message}"))
        if status == 404:
            return ModelNotFound(self.clean(f"{where}: not found (HTTP 404): {message}"))
        return RemoteEndpointError(self.clean(f"{where} answered HTTP {status}: {message}"))

    def fetch_json(self, method: str, path: str, body: Any = None) -> Any:
        """A whole JSON answer (None when it is not JSON)."""
        import httpx

        resp = self.send(method, path, body)
        try:
            return json_or_none(resp.read())
        except httpx.HTTPError as exc:
            raise RemoteEndpointError(self.clean(f"{self.shown} dropped its answer: {reason(exc)}")) from None
        finally:
            resp.close()

    def models(self) -> list[str]:
        """The model ids `GET /models` lists."""
        try:
            doc = self.fetch_json("GET", "/models")
        except ModelNotFound:  # no such route: not the API root
            raise RemoteEndpointError(f"{self.shown}/models not found (HTTP 404); is this the API root?") from None
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise RemoteEndpointError(f"{self.shown}/models is not an OpenAI-compatible model list")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def error_text(doc: Any) -> str:
    """The message of an OpenAI (`{"error": {"message"}}`), vLLM (`{"message"}`), TGI (`{"error": "..."}`) or
    FastAPI (`{"detail"}`) error document; "" when there is none."""
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    for value in (err, doc.get("message"), doc.get("detail")):
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    return ""


def json_or_none(raw: bytes) -> Any:
    """`raw` parsed as JSON; None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def reason(exc: BaseException) -> str:
    """What went wrong, for a message: the exception's text, else its type."""
    return str(exc) or type(exc).__name__
