"""Slots: several requests decoded in one llama.cpp batch over the same weights (continuous batching).

Each slot is a sequence id in one context whose KV cache holds `parallel` streams of `n_ctx` cells. Every
`step` builds one `llama_batch` from each decoding slot's next token (plus its drafted tokens under
speculative decoding) and then chunks of the prompts still being evaluated, so a long prompt never stalls
the others for more than one batch; one `llama_decode`, then each slot samples with its own sampler chain
(its temperature, top-p, seed, grammar) and hands its text to its own sink.

A new request takes the free slot whose cached tokens share the longest prefix with its prompt, and evaluates
only what follows. Prompt-lookup speculative decoding drafts tokens by matching the last n-gram against the
slot's own history; a drafted token is kept while the model, sampling position by position with the slot's
own sampler, picks that same token, so the reply is the one the model would give without drafting.
"""

from __future__ import annotations

import ctypes
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engines.adapters.base import Batcher, SlotStats
from engines.adapters.llama_cpp_reply import Reply, token_logprob
from engines.errors import Cancelled, ContextLengthExceeded
from engines.types import (
    Done,
    Error,
    FinishReason,
    LaunchOptions,
    Params,
    Reasoning,
    StreamEvent,
    TokenLogprob,
    Usage,
)

if TYPE_CHECKING:
    from engines.requests import RequestHandle

Emit = Callable[[StreamEvent], None]

# Sampling defaults when a Params field is None (llama-cpp-python's own defaults, as the one-request path uses).
TEMPERATURE, TOP_P, TOP_K, MIN_P = 0.8, 0.95, 40, 0.05
_PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size
DRAFT_NGRAM = 3
"""Prompt lookup: the longest n-gram matched against the history (its first occurrence). Measured over four
prompts and two templates, 3 and the first occurrence beat 2, and the latest occurrence, by 5 to 30 %."""
DRAFT_SIZES = (3, 7, 15)
"""How many tokens a draft holds. Every drafted token costs a row of logits over the whole vocabulary (for a 262k
vocabulary on a CPU that row costs as much as the rest of the step), and llama.cpp's CPU kernels take those rows
four at a time (measured on Gemma 3 270M, 2 cores: 1 row 11 ms, 2 rows 23, 4 rows 29, 8 rows 36), so a draft
plus the token before it makes a multiple of four. The size goes up while every draft is confirmed and down to
what was confirmed otherwise. (Pausing after poor drafts was tried and lost more than it saved.)"""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request's prompt tokens and how its reply is cut, ready for a slot."""

    tokens: list[int]
    stops: tuple[str, ...]
    strip_leading: bool = True
    what: str = "conversation"
    thinking: bool = False
    """The prompt ends inside an open `<think>` block (the reply starts with thinking)."""


@dataclass(eq=False)
class _Request:
    prepared: Prepared
    params: Params
    cancel: threading.Event
    emit: Emit
    reply: Reply
    sampler: Any
    pending: list[int] = field(default_factory=list)
    """Tokens to evaluate next: the rest of the prompt, or the last sampled token."""
    drafts: list[int] = field(default_factory=list)
    draft_limit: int = DRAFT_SIZES[0]


@dataclass(eq=False)
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)
    """The tokens this sequence's KV cells hold, position by position."""
    request: _Request | None = None
    used: int = 0


class SlotScheduler(Batcher):
    """`parallel` slots over one llama.cpp context sharing `llm`'s model (and its LoRA adapter, if any).

    `prepare` turns a queued request into prompt tokens (the engine's template and tokenizer); `grammar`
    gives the vetted GBNF text for a JSON schema; `piece_of` a token's bytes (None for end of generation)."""

    def __init__(
        self,
        lib: Any,
        llm: Any,
        options: LaunchOptions,
        *,
        threads: int,
        swa_full: bool,
        prepare: Callable[[RequestHandle], Prepared],
        grammar: Callable[[str], str],
        piece_of: Callable[[int], bytes | None],
        token_bytes: Callable[[int], bytes],
    ):
        self.parallel = max(1, options.parallel)
        self.n_ctx = options.n_ctx
        self.n_batch = min(options.n_ctx, 512)
        self.speculative = options.speculative == "prompt-lookup"
        self.seed = options.seed
        self._lib, self._llm = lib, llm
        self._prepare, self._grammar, self._piece_of, self._token_bytes = prepare, grammar, piece_of, token_bytes
        self._n_vocab = llm.n_vocab()
        self._vocab = lib.llama_model_get_vocab(llm.model)
        self.proposed = self.accepted = 0
        self.prompt_tokens_evaluated = 0
        """Prompt tokens the last admitted request has to evaluate (the rest came from its slot's cache)."""
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_ctx * self.parallel
        params.n_seq_max = self.parallel
        # A stream of cells per slot: attention reads only that slot's cells, not every slot's (llama-server's
        # default for a fixed --parallel). A lone request on fresh slots computes exactly what it would without
        # slots; beside others, or once other slots hold cells, the attention's F16 sums run over a wider view
        # and in another order (log-probabilities move in the second decimal; greedy picks only at near-ties).
        params.kv_unified = False
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_threads = params.n_threads_batch = threads
        params.swa_full = swa_full
        self._ctx = lib.llama_init_from_model(llm.model, params)
        if not self._ctx:
            raise MemoryError(f"llama.cpp could not make a context for {self.parallel} slots of {self.n_ctx} tokens")
        adapter = getattr(llm, "_lora_adapter", None)
        if adapter is not None:
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(adapter)
            lib.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(llm.lora_scale))
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self._slots = [_Slot(seq) for seq in range(self.parallel)]
        self._clock = 0

    def close(self) -> None:
        """Free the batch, the samplers and the context (the model belongs to `llm`)."""
        for slot in self._slots:
            if slot.request is not None:
                self._lib.llama_sampler_free(slot.request.sampler)
                slot.request = None
        if self._ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None

    # -- Batcher ------------------------------------------------------------------------------------------------

    def free_slots(self) -> int:
        return sum(slot.request is None for slot in self._slots)

    def busy_slots(self) -> int:
        return self.parallel - self.free_slots()

    def stats(self) -> SlotStats:
        return SlotStats(self.parallel, self.busy_slots(), self.proposed, self.accepted)

    def admit(self, handle: RequestHandle, emit: Emit) -> None:
        try:
            prepared = self._prepare(handle)
        except Cancelled:
            emit(Done(Usage(), finish_reason="cancelled"))
            return
        self.admit_prepared(prepared, handle.params, handle.cancel_event, emit)

    def admit_prepared(self, prepared: Prepared, params: Params, cancel: threading.Event, emit: Emit) -> None:
        """Take a prepared request into a free slot: the one holding its conversation, else the least recently used
        (see `_pick`)."""
        tokens = prepared.tokens
        n_prompt = len(tokens)
        if n_prompt >= self.n_ctx:
            raise ContextLengthExceeded(too_long(prepared.what, str(n_prompt), self.n_ctx))
        free = [slot for slot in self._slots if slot.request is None]
        if not free:
            raise RuntimeError("no free slot")  # the instance admits only while free_slots() > 0
        budget = self.n_ctx - n_prompt
        max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        reply = Reply(n_prompt, max_tokens, budget, prepared.stops, strip_leading=prepared.strip_leading)
        if cancel.is_set():
            for event in reply.close("cancelled"):
                emit(event)
            return
        # A seeded sampled reply evaluates its prompt from scratch: a reused prefix changes the batches and so
        # the logits, and the same seed would then draw other tokens (greedy picks are not that fragile).
        sampler = self._sampler(params)  # a schema whose grammar fails is refused before any slot is touched
        reuse = params.seed is None or params.temperature == 0
        slot, n_past = self._pick(free, tokens) if reuse else (min(free, key=lambda s: s.used), 0)
        if not self._lib.llama_memory_seq_rm(self._mem, slot.seq, n_past, -1):
            self._lib.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)  # a cache that cannot be cut is cleared
            n_past = 0
        del slot.cached[n_past:]
        self.prompt_tokens_evaluated = n_prompt - n_past
        self._clock += 1
        slot.used = self._clock
        slot.request = _Request(prepared, params, cancel, emit, reply, sampler, pending=tokens[n_past:])
        if prepared.thinking:
            emit(Reasoning(""))  # engines.shaper: the reply starts inside the thinking block

    @staticmethod
    def _pick(free: list[_Slot], tokens: list[int]) -> tuple[_Slot, int]:
        """The slot whose cache holds at least half of this prompt (the conversation going on) and how much of it,
        else the least recently used slot, from scratch: a new conversation does not evict another's cache for
        the few template tokens every prompt starts with, and its prompt is evaluated whole, as it would be
        alone."""
        best = max(free, key=lambda s: (_common_prefix(s.cached, tokens), -s.used))
        shared = _common_prefix(best.cached, tokens)
        if shared * 2 >= len(tokens):
            return best, min(shared, len(tokens) - 1)
        return min(free, key=lambda s: s.used), 0

    def step(self) -> None:
        lib, batch = self._lib, self._batch
        for slot in self._slots:
            request = slot.request
            if request is not None and request.cancel.is_set():
                self._end(slot, "cancelled")
        plan: list[tuple[_Slot, int, int]] = []  # slot, its first index in the batch, tokens it put there
        n = 0
        # Decoding slots first (one token each, plus drafts), then prompt chunks in the room that is left.
        decoding = [s for s in self._slots if s.request is not None and len(s.request.pending) == 1]
        prefilling = [s for s in self._slots if s.request is not None and len(s.request.pending) > 1]
        for slot in decoding:
            request = slot.request
            assert request is not None
            if self.speculative:
                request.drafts = self._draft(slot, request, self.n_batch - n - 1)
            chunk = [*request.pending, *request.drafts]
            n = self._fill(slot, chunk, n, every_logit=True)
            plan.append((slot, n - len(chunk), len(chunk)))
        for slot in sorted(prefilling, key=lambda s: s.used):
            request = slot.request
            assert request is not None
            room = self.n_batch - n
            if room <= 0:
                break
            chunk = request.pending[:room]
            n = self._fill(slot, chunk, n, every_logit=False, last_logit=len(chunk) == len(request.pending))
            plan.append((slot, n - len(chunk), len(chunk)))
        if not n:
            return
        batch.n_tokens = n
        code = lib.llama_decode(self._ctx, batch)
        if code != 0:
            for slot, _, _ in plan:
                lib.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                slot.cached.clear()
                self._fail(slot, f"llama.cpp could not decode the batch (code {code})")
            return
        for slot, first, count in plan:
            try:
                self._advance(slot, first, count)
            except Exception as exc:  # one request's failure (e.g. its grammar) never ends the others
                self._fail(slot, f"{type(exc).__name__}: {exc}")

    # -- one sequence -------------------------------------------------------------------------------------------

    def _fill(self, slot: _Slot, chunk: list[int], n: int, *, every_logit: bool, last_logit: bool = True) -> int:
        batch, seq, pos = self._batch, slot.seq, len(slot.cached)
        token, position, n_seq, seq_id, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        for i, t in enumerate(chunk):
            token[n + i] = t
            position[n + i] = pos + i
            n_seq[n + i] = 1
            seq_id[n + i][0] = seq
            logits[n + i] = every_logit
        if last_logit:
            logits[n + len(chunk) - 1] = True
        return n + len(chunk)

    def _advance(self, slot: _Slot, first: int, count: int) -> None:
        """After a decode: keep what the slot evaluated, and sample where its prompt or its reply goes on."""
        request = slot.request
        assert request is not None
        pending = request.pending
        if len(pending) > count:  # a prompt chunk that is not the last: nothing to sample yet
            slot.cached.extend(pending[:count])
            del pending[:count]
            return
        slot.cached.extend(pending)
        drafts, request.drafts = request.drafts, []
        base = len(slot.cached)  # the drafts' cells start here
        self.proposed += len(drafts)
        index = first + len(pending) - 1  # the output of the last token the request had pending
        reply, top = request.reply, request.params.logprobs
        for i in range(len(drafts) + 1):
            token = self._lib.llama_sampler_sample(request.sampler, self._ctx, index + i)
            piece = self._piece_of(token)
            if delta := reply.add(piece, self._logprob(index + i, token, piece, top)):
                request.emit(delta)
            if reply.finish is not None:
                break
            if i < len(drafts) and token == drafts[i]:
                self.accepted += 1
                slot.cached.append(token)  # its cell already holds this very token at this position
                continue
            request.pending = [token]
            break
        if drafts:
            _adapt(request, len(slot.cached) - base, len(drafts))
        if len(slot.cached) < base + len(drafts):  # free the cells of the drafts the model did not confirm
            self._lib.llama_memory_seq_rm(self._mem, slot.seq, len(slot.cached), -1)
        if reply.finish is not None:
            self._end(slot, None)

    def _draft(self, slot: _Slot, request: _Request, room: int) -> list[int]:
        """Prompt lookup: the tokens that followed the last n-gram's earlier occurrence in this slot's history."""
        import numpy as np
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        reply = request.reply
        limit = min(
            request.draft_limit, room, reply.max_tokens - reply.completion - 1, self.n_ctx - len(slot.cached) - 1
        )
        if limit <= 0:
            return []
        history = np.array([*slot.cached, *request.pending], dtype=np.intc)
        found = LlamaPromptLookupDecoding.find_candidate_pred_tokens(history, DRAFT_NGRAM, limit)
        size = max((n for n in DRAFT_SIZES if n <= len(found)), default=0)  # whole groups of four rows only
        return [int(t) for t in found[:size]]

    def _logprob(self, index: int, token: int, piece: bytes | None, top: int | None) -> TokenLogprob | None:
        if top is None or piece is None:
            return None
        logits = self._lib.llama_get_logits_ith(self._ctx, index)
        return token_logprob(logits, self._n_vocab, token, piece, top, self._token_bytes)

    def _end(self, slot: _Slot, finish: FinishReason | None) -> None:
        request = slot.request
        assert request is not None
        slot.request = None
        self._lib.llama_sampler_free(request.sampler)
        for event in request.reply.close(finish):
            request.emit(event)

    def _fail(self, slot: _Slot, message: str) -> None:
        request = slot.request
        assert request is not None
        slot.request = None
        self._lib.llama_sampler_free(request.sampler)
        request.emit(Error(message, kind="engine"))

    def _sampler(self, params: Params) -> Any:
        """A sampler chain in llama-cpp-python's order: penalties, grammar, then greedy or top-k/p, min-p, temp."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            lib.llama_sampler_chain_add(chain, sampler)

        if params.repetition_penalty not in (None, 1.0):
            add(lib.llama_sampler_init_penalties(self._n_vocab, _PENALTY_LAST_N, params.repetition_penalty, 0.0, 0.0))
        if params.json_schema is not None:
            text = self._grammar(params.json_schema)
            add(lib.llama_sampler_init_grammar(self._vocab, text.encode(), b"root"))
        temperature = TEMPERATURE if params.temperature is None else params.temperature
        if temperature == 0:
            add(lib.llama_sampler_init_greedy())
            return chain
        seed = params.seed if params.seed is not None else self.seed
        add(lib.llama_sampler_init_top_k(TOP_K if params.top_k is None else params.top_k))
        add(lib.llama_sampler_init_top_p(TOP_P if params.top_p is None else params.top_p, 1))
        add(lib.llama_sampler_init_min_p(MIN_P, 1))
        add(lib.llama_sampler_init_temp(temperature))
        add(lib.llama_sampler_init_dist(seed if seed is not None else random.getrandbits(32)))
        return chain

    # -- one request alone (Engine.chat / complete in slot mode) --------------------------------------------------

    def run(self, prepared: Prepared, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Admit one request and step until it ends, yielding its events (no other request may be running)."""
        events: list[StreamEvent] = []

        def emit(event: StreamEvent) -> None:
            events.append(event)

        self.admit_prepared(prepared, params, cancel, emit)
        try:
            while True:
                yield from events
                if events and isinstance(events[-1], Done | Error):
                    return
                events.clear()
                self.step()
        finally:  # a caller that stops listening frees the slot
            for slot in self._slots:
                if slot.request is not None and slot.request.emit is emit:
                    self._end(slot, "cancelled")


def _adapt(request: _Request, confirmed: int, drafted: int) -> None:
    """The next draft's size from how this one went (see DRAFT_SIZES)."""
    if confirmed == drafted:
        request.draft_limit = next((n for n in DRAFT_SIZES if n > drafted), DRAFT_SIZES[-1])
    else:
        request.draft_limit = next((n for n in DRAFT_SIZES if n > confirmed), DRAFT_SIZES[-1])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def too_long(what: str, tokens: str, n_ctx: int) -> str:
    """The message for a prompt the context cannot hold with room for a reply."""
    return (
        f"the {what} is {tokens} tokens but the context holds {n_ctx} (and the reply needs room); "
        "shorten it or relaunch with a larger context"
    )
