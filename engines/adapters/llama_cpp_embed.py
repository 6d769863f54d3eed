"""Embeddings on llama.cpp: a second, embedding-mode context on the same GGUF, opened on first use.

A text longer than that context is refused (EmbedInputTooLong), never cut. Texts are packed into decodes the way
`Llama.embed` packs them, and the request's cancel Event stops the work between decodes and, through llama.cpp's
abort callback, inside one (Cancelled): a client that leaves frees the instance for the next request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from engines.adapters.llama_cpp_native import clear_log, quoted_log
from engines.adapters.token_bound import tokenize_within
from engines.errors import BadModelFile, BadRequest, Cancelled, EmbedInputTooLong

MAX_EMBED_CONTEXT = 2048
"""Tokens one text may hold: the embedding context is the instance's context, at most this."""


class Embedder:
    """Mean-pooled, L2-normalised embeddings from an embedding-mode llama.cpp context."""

    def __init__(self, lib: Any, path: Path, n_ctx: int, threads: int, n_gpu_layers: int) -> None:
        n_ctx = min(n_ctx, MAX_EMBED_CONTEXT)
        clear_log()
        try:
            self.llama: Any = lib.Llama(
                model_path=str(path),
                embedding=True,
                pooling_type=lib.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                verbose=False,
            )
        except Exception as exc:
            raise BadModelFile(str(path), f"cannot open it for embeddings: {exc}{quoted_log()}") from None
        self._cancel: threading.Event | None = None

        def abort(_data: Any) -> bool:
            # Called by ggml between graph nodes (CPU backend): a 2,048-token decode stops within milliseconds.
            cancel = self._cancel
            return cancel is not None and cancel.is_set()

        self._abort_callback = lib.ggml_abort_callback(abort)  # kept referenced while C holds it
        lib.llama_set_abort_callback(self.llama.ctx, self._abort_callback, None)

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> tuple[list[list[float]], int]:
        """The vectors of `texts` and the tokens read; EmbedInputTooLong naming the first text past the context."""
        limit = int(self.llama.n_batch)  # n_ctx = n_batch = n_ubatch: one text is decoded in one go
        counts = []
        for i, text in enumerate(texts):
            tokens, whole = tokenize_within(self.llama.tokenize, text.encode("utf-8"), limit)  # as Llama.embed does
            if not whole or len(tokens) > limit:
                raise EmbedInputTooLong(i, len(tokens), limit, over=not whole)
            counts.append(len(tokens))
        vectors: list[list[float]] = []
        self._cancel = cancel
        try:
            for group in _groups(list(texts), counts, limit):  # one decode each, as Llama.embed would pack them
                if cancel is not None and cancel.is_set():
                    raise Cancelled("embedding cancelled")
                try:
                    vectors.extend(self.llama.embed(group, normalize=True, truncate=False))
                except RuntimeError:  # llama_decode returned 2: our abort callback stopped it
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("embedding cancelled") from None
                    raise
                except ValueError as exc:
                    raise BadRequest(f"cannot embed: {exc}") from None
        finally:
            self._cancel = None
        return [[float(x) for x in v] for v in vectors], sum(counts)

    def close(self) -> None:
        """Free the embedding context."""
        self.llama.close()


def _groups(texts: list[str], counts: list[int], n_batch: int, n_seq: int = 64) -> Iterator[list[str]]:
    """Texts in runs of at most `n_batch` tokens and `n_seq` texts: what one embedding decode takes."""
    group: list[str] = []
    used = 0
    for text, n in zip(texts, counts, strict=True):
        if group and (used + n > n_batch or len(group) >= n_seq):
            yield group
            group, used = [], 0
        group.append(text)
        used += n
    if group:
        yield group
