"""Batches for the transformers engine: concurrent requests decoded in one forward pass per step.

A batch starts with every request waiting (up to `parallel`): their prompts left-padded into one tensor, one
prefill, then one forward per step over all rows with one KV cache. Each row samples with its own settings and
generator (temperature, top-k, top-p, repetition penalty, seed) and ends on its own (end token, stop text,
max_tokens, cancel); an ended row leaves the batch (`DynamicCache.batch_select_indices`), so the rest run as
fast as a smaller batch. Requests that arrive while a batch runs wait for the next one: a running cache cannot
take a new prompt without recomputing it (static batching with early exit, not continuous batching).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engines.adapters.base import Batcher, SlotStats
from engines.adapters.llama_cpp_reply import Reply
from engines.adapters.transformers_generate import TEMPERATURE, TOP_K, TOP_P
from engines.errors import Cancelled, CapabilityNotSupported, ContextLengthExceeded
from engines.types import Done, Error, Params, Reasoning, StreamEvent, Usage

if TYPE_CHECKING:
    from engines.adapters.transformers_engine import TransformersEngine
    from engines.requests import RequestHandle

Emit = Callable[[StreamEvent], None]


@dataclass(eq=False)
class _Row:
    tokens: list[int]
    params: Params
    cancel: threading.Event
    emit: Emit
    reply: Reply
    eos_ids: frozenset[int]
    generator: Any
    generated: list[int] = field(default_factory=list)
    shown: str = ""
    """The decoded text handed to `reply` so far."""


class TransformersBatch(Batcher):
    """Up to `parallel` requests of one TransformersEngine decoded together."""

    def __init__(self, engine: TransformersEngine, parallel: int):
        self.engine, self.parallel = engine, parallel
        self.waiting: list[_Row] = []
        self.rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None
        self._next: Any = None
        self._cache_arg: str | None = None
        self.batches = 0
        """Batches started (for tests and the note: how often requests shared one)."""

    def free_slots(self) -> int:
        return 0 if self.rows else self.parallel - len(self.waiting)

    def busy_slots(self) -> int:
        return len(self.rows) + len(self.waiting)

    def stats(self) -> SlotStats:
        return SlotStats(self.parallel, self.busy_slots())

    def admit(self, handle: RequestHandle, emit: Emit) -> None:
        engine, params = self.engine, handle.params
        params.validate()
        if params.json_schema is not None:
            raise CapabilityNotSupported(engine.name, "json_schema")
        if handle.prompt is not None:
            raise CapabilityNotSupported(engine.name, "completion")
        try:
            tokens = engine.tokenize_prompt(handle.messages, handle.cancel_event, params.tools)
        except Cancelled:
            emit(Done(Usage(), finish_reason="cancelled"))
            return
        n_ctx = engine.context_size
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"the conversation is {len(tokens)} tokens but the context holds {n_ctx} (and the reply needs "
                "room); shorten it or relaunch with a larger context"
            )
        budget = n_ctx - len(tokens)
        max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        stops = engine.stops_for(params)
        reply = Reply(len(tokens), max_tokens, budget, stops, strip_leading=True)
        import torch

        seed = params.seed if params.seed is not None else engine.launch_seed
        generator = torch.Generator(device=engine.device).manual_seed(
            seed if seed is not None else random.getrandbits(63)
        )
        eos = frozenset(engine.end_ids(stops))
        self.waiting.append(_Row(tokens, params, handle.cancel_event, emit, reply, eos, generator))
        if engine.opens_thinking(tokens):
            emit(Reasoning(""))  # engines.shaper: the reply starts inside the thinking block

    def step(self) -> None:
        for row in [r for r in self.waiting if r.cancel.is_set()]:
            self.waiting.remove(row)
            self._close(row, "cancelled")
        live = [i for i, row in enumerate(self.rows) if not row.cancel.is_set()]
        for row in (r for r in self.rows if r.cancel.is_set()):
            self._close(row, "cancelled")
        self._keep(live)
        if not self.rows:
            if self.waiting:
                self._prefill()
            return
        import torch

        self._mask = torch.cat([self._mask, self._mask.new_ones((len(self.rows), 1))], dim=1)
        positions = (self._mask.sum(dim=1, keepdim=True) - 1).long()
        self._sample(self._forward(self._next, self._mask, positions, self._cache))

    def _prefill(self) -> None:
        import torch

        rows, self.waiting = self.waiting, []
        self.rows = rows
        self.batches += 1
        width = max(len(r.tokens) for r in rows)
        pad = self.engine.pad_id or 0
        device = self.engine.device
        ids = torch.tensor([[pad] * (width - len(r.tokens)) + r.tokens for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r.tokens)) + [1] * len(r.tokens) for r in rows], device=device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        self._mask = mask
        self._sample(self._forward(ids, mask, positions, None))

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        """One forward pass over the batch, keeping its cache; the logits of each row's last position only (a
        vocabulary-wide row per prompt token would cost more than the rest of a prefill)."""
        import inspect

        import torch

        model = self.engine.model
        if self._cache_arg is None:  # "cache" since transformers 5, "past_key_values" before
            self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        with torch.inference_mode():
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_arg: cache},
            )
        self._cache = out[self._cache_arg]
        return out.logits[:, -1, :]

    def _sample(self, logits: Any) -> None:
        """One token per row with its own settings; rows that end leave the batch and its cache."""
        import torch

        chosen: list[int] = []
        keep: list[int] = []
        for i, row in enumerate(self.rows):
            try:
                token = self._pick(row, logits[i : i + 1].float())
                row.generated.append(token)
                self._feed(row, token)
            except Exception as exc:  # one row's failure never ends the others
                row.emit(Error(f"{type(exc).__name__}: {exc}", kind="engine"))
                continue
            if row.reply.finish is not None:
                self._close(row, None)
            else:
                keep.append(i)
                chosen.append(token)
        self._next = None
        self._keep(keep)
        if self.rows:
            self._next = torch.tensor([[t] for t in chosen], device=logits.device)

    def _keep(self, indices: list[int]) -> None:
        """Only these rows stay in the batch, its cache and its mask."""
        if len(indices) == len(self.rows):
            return
        if not indices:
            self.rows, self._cache, self._mask, self._next = [], None, None, None
            return
        import torch

        index = torch.tensor(indices, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        if self._next is not None:
            self._next = self._next[index]
        self.rows = [self.rows[i] for i in indices]

    def _pick(self, row: _Row, logits: Any) -> int:
        import torch

        params = row.params
        if params.repetition_penalty not in (None, 1.0):
            seen = torch.tensor([row.tokens + row.generated], device=logits.device)
            picked = logits.gather(1, seen)
            penalty = float(params.repetition_penalty or 1.0)
            logits = logits.scatter(1, seen, torch.where(picked < 0, picked * penalty, picked / penalty))
        temperature = TEMPERATURE if params.temperature is None else params.temperature
        if temperature == 0:
            return int(logits.argmax(dim=-1))
        logits = logits / temperature
        top_k = TOP_K if params.top_k is None else params.top_k
        if top_k:
            floor = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
            logits = logits.masked_fill(logits < floor, float("-inf"))
        top_p = TOP_P if params.top_p is None else params.top_p
        if top_p < 1:
            ordered, order = torch.sort(logits, descending=True)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - ordered.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=row.generator))

    def _feed(self, row: _Row, token: int) -> None:
        """The text this token adds (decoded with the reply so far, so a character split over tokens comes whole)."""
        if token in row.eos_ids:
            row.reply.add(None)
            return
        text = self.engine.tokenizer.decode(row.generated, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half a character: wait for the token that completes it
            added = b""
        else:
            added, row.shown = text[len(row.shown) :].encode(), text
        if delta := row.reply.add(added):
            row.emit(delta)

    def _close(self, row: _Row, finish: Any) -> None:
        for event in row.reply.close(finish):
            row.emit(event)
