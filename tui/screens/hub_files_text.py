"""What the Hub files screen says about a model: its name in the list, its verdict in a few words, the line under
the table (the best and why the next one up does not fit) and the detail lines of the highlighted model."""

from __future__ import annotations

from engines.catalog.fit import Resources, estimate, human_bytes, human_params
from engines.catalog.listing import CatalogRow, row_shape
from engines.hub.model_files import ModelFile
from engines.hub.remote_fit import FileFit

READING = "reading header…"
BEST = "★ "


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def model_label(model: ModelFile) -> str:
    """What the Model column calls it: the file, "base (3 parts)", "safetensors (2 shards)"."""
    return model.label


ERROR_WORDS = {
    "auth": "✗ gated: hf_token",
    "unreachable": "✗ unreachable",
    "rate_limited": "✗ rate limited",
    "not_found": "✗ not on the Hub",
    "cancelled": "✗ cancelled",
}
"""The Fit column's few words for a header that could not be read, by FileFit.error_kind (the detail line has
the whole text); a malformed header or any other is "✗ unreadable"."""


def verdict_text(result: FileFit | None) -> tuple[str, str]:
    """(the Fit column's words, the theme's text colour they are drawn in: success, warning, error, accent, or
    muted)."""
    if result is None:
        return READING, "muted"
    if result.row is None or result.row.status != "ok":
        return ERROR_WORDS.get(result.error_kind or "", "✗ unreadable"), "error"
    info = result.row.fit
    if info is None:
        return "-", ""
    if "exceeds free disk" in info.verdict:
        return "✗ not enough disk", "warning"
    if info.verdict.startswith("does not fit"):
        return "✗ does not fit", "warning"
    if info.verdict.startswith("partial"):
        return "~ partial offload", "accent"
    return f"✓ {info.verdict}", "success"


def context_text(tokens: int | None) -> str:
    """A trained context length as the Ctx column shows it: 8k, 128k, or the exact count."""
    if not tokens:
        return "-"
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else f"{tokens:,}"


def reason_text(
    models: list[ModelFile], best: int | None, why_not_next: str | None, resources: Resources | None
) -> tuple[str, str]:
    """(the line under the table once every header is read, its theme colour): the best and why the next one up
    does not fit, or why none fits."""
    where = "on the GPU" if resources is not None and resources.gpus else "in RAM"
    if best is not None:
        name = models[best].quantization_hint or model_label(models[best])
        text = f"{BEST}{name} is the largest that fits entirely {where}"
        return text + (f"; {why_not_next}" if why_not_next else "; every model here fits"), "text-success"
    if why_not_next:
        return f"None fits entirely {where}: {why_not_next}", "text-warning"
    return "", ""


def token_hint(repo: str, token_set: bool) -> str:
    """The line under the table when the Hub refused every header: what to do about the token."""
    if not token_set:
        return (
            f"{repo} is gated or private: accept its licence on its Hub page, then set hf_token"
            " (Settings, or the HF_TOKEN environment variable)"
        )
    return f"The Hub refused hf_token for {repo}: accept its licence with that account, or check it"


def detail_lines(
    model: ModelFile,
    result: FileFit | None,
    *,
    n_ctx: int,
    resources: Resources | None,
    commit: str,
    refused: bool,
) -> list[str]:
    """The highlighted model: what `d` fetches and the free disk, its shape, the KV cache at `n_ctx` and the
    memory numbers, and what reading its header cost. `refused`: the line above already says why the Hub
    refused it."""
    size = f" ({human_bytes(model.download_bytes)})" if model.download_bytes else ""
    projector = f", with the projector {model.projector.path}" if model.projector else ""
    disk = resources.disk_free_bytes if resources is not None else None
    free = f"; disk free {human_bytes(disk)}" if disk is not None else ""
    lines = [f"{model.kind}: {plural(len(model.files), 'file')} to download{size}{projector}{free}"]
    if result is None:
        return [*lines, f"reading the header of {model_label(model)}…"]
    if refused:
        lines.append("header not read: the Hub refused it (the line above says what to do)")
    elif result.row is None or result.row.status != "ok":
        lines.append(f"header not read: {result.error or 'unreadable'}")
    else:
        lines += facts(result.row, n_ctx)
    cached = " (kept from an earlier read)" if result.cached else ""
    read = f"header: {human_bytes(result.bytes_read)} read in {plural(result.requests, 'request')}{cached}"
    return [*lines, f"{read} · commit {commit[:12]}"]


def facts(row: CatalogRow, n_ctx: int) -> list[str]:
    """What the header says and what it means here: layers, heads, parameters, the KV cache at `n_ctx`, the
    verdict and the numbers behind it."""
    shape = [
        row.architecture,
        f"{row.layers} layers" if row.layers else None,
        f"{row.kv_heads} KV head{'s' if row.kv_heads != 1 else ''}" if row.kv_heads else None,
        f"{human_params(row.params)} params" if row.params else None,
        f"trained for {row.context_length:,} tokens" if row.context_length else None,
    ]
    lines = [" · ".join(p for p in shape if p)]
    model_shape = row_shape(row)
    if model_shape is not None and row.fit is not None:
        kv = estimate(model_shape, n_ctx=n_ctx).kv_cache_bytes
        lines.append(f"KV cache at {n_ctx:,} tokens: {human_bytes(kv)} · {row.fit.verdict}")
        # The download and free disk are said on the first line, with the projector and small files counted.
        lines.append("; ".join(p for p in row.fit.summary.split("; ") if not p.startswith("download ")))
    return [line for line in lines if line]
