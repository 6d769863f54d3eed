"""Prompt-prefix reuse for one llama-cpp-python context, across turns and across conversations.

The context remembers the tokens it has evaluated (`Llama.input_ids[:n_tokens]`);
a request evaluates only what follows the longest common prefix. When another
conversation (`session`) takes the context, the one holding it is parked: its
tokens and the KV cells of sequence 0 are copied out into a byte-bounded LRU,
and copied back when it returns. llama-cpp-python's own LlamaRAMCache is not
used: its LlamaState copies the logits rows too, which for Gemma's 262k-token
vocabulary is up to 512 MiB per state.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ParkedState:
    """A conversation's evaluated tokens and the KV-cache bytes of its sequence."""

    tokens: Any  # numpy int array
    data: bytes


class StateLru:
    """Parked conversation states, least recently used dropped first beyond `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[str, ParkedState] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def put(self, session: str, state: ParkedState) -> None:
        """Keep `state` for `session`, evicting the oldest states to stay within the byte budget."""
        self.pop(session)
        if len(state.data) > self.capacity_bytes:
            return
        self._states[session] = state
        self.nbytes += len(state.data)
        while self.nbytes > self.capacity_bytes:
            _, old = self._states.popitem(last=False)
            self.nbytes -= len(old.data)

    def pop(self, session: str) -> ParkedState | None:
        """Take `session`'s state out (it goes stale once the context moves on)."""
        state = self._states.pop(session, None)
        if state is not None:
            self.nbytes -= len(state.data)
        return state

    def clear(self) -> None:
        """Drop every parked state."""
        self._states.clear()
        self.nbytes = 0


class PrefixCache:
    """Decides how much of a prompt a llama_cpp.Llama already holds, and makes its KV cache match."""

    def __init__(self, capacity_bytes: int) -> None:
        self.parked = StateLru(capacity_bytes)
        self.owner: str | None = None
        """The conversation whose tokens the context holds now."""
        self._llm: Any = None
        self._lib: Any = None
        self._n_swa = 0

    def attach(self, llm: Any, lib: Any) -> None:
        """Serve a freshly loaded Llama (`lib` is the llama_cpp module)."""
        self.clear()
        self._llm, self._lib = llm, lib
        self._n_swa = int(lib.llama_model_n_swa(llm.model)) if hasattr(lib, "llama_model_n_swa") else 0

    def detach(self) -> None:
        """Forget the Llama (it is being closed) and every parked state."""
        self.clear()
        self._llm = self._lib = None

    def clear(self) -> None:
        """Forget the evaluated prefix and every parked state."""
        self.parked.clear()
        self.owner = None
        if self._llm is not None:
            self._llm.reset()

    def prepare(self, tokens: list[int], session: str | None, *, reuse: bool = True) -> int:
        """Make the context hold the longest reusable prefix of `tokens`; return its length (never all of it).

        `reuse=False` empties the context instead (returns 0): llama.cpp's logits depend on how the tokens
        were batched, so only a prompt evaluated from scratch, in the same batches, gives the same logits
        whatever ran before (a seeded reply needs that). Other conversations stay parked.
        """
        if session != self.owner:
            self._switch(session, tokens if reuse else [])
        if reuse:
            return self._truncate_to_common_prefix(tokens)
        llm, lib = self._llm, self._lib
        # Clear the memory, not just drop the cells: the next cells are then laid out as in a fresh context.
        lib.llama_memory_clear(lib.llama_get_memory(llm.ctx), True)
        llm.reset()
        return 0

    def _switch(self, session: str | None, tokens: list[int]) -> None:
        """Park the conversation holding the context and bring back `session`'s, if it is the better prefix."""
        llm = self._llm
        if self.owner is not None and llm.n_tokens > 0:
            self.parked.put(self.owner, self._park())
        self.owner = session
        parked = self.parked.pop(session) if session is not None else None
        if parked is not None and common_prefix(parked.tokens, tokens) > common_prefix(
            llm.input_ids[: llm.n_tokens], tokens
        ):
            self._restore(parked)

    def _park(self) -> ParkedState:
        llm, lib = self._llm, self._lib
        size = int(lib.llama_state_seq_get_size(llm.ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        n = int(lib.llama_state_seq_get_data(llm.ctx, buf, size, 0))
        return ParkedState(tokens=llm.input_ids[: llm.n_tokens].copy(), data=ctypes.string_at(buf, n))

    def _restore(self, parked: ParkedState) -> None:
        llm, lib = self._llm, self._lib
        lib.llama_memory_clear(lib.llama_get_memory(llm.ctx), True)
        buf = (ctypes.c_uint8 * len(parked.data)).from_buffer_copy(parked.data)
        if int(lib.llama_state_seq_set_data(llm.ctx, buf, len(parked.data), 0)) == 0:
            llm.reset()  # a state this context cannot take: evaluate from scratch instead
            return
        n = len(parked.tokens)
        llm.input_ids[:n] = parked.tokens
        llm.n_tokens = n
        if hasattr(llm, "_requires_eval"):
            llm._requires_eval = True  # the context's logits are not those of the restored tokens

    def _truncate_to_common_prefix(self, tokens: list[int]) -> int:
        llm, lib = self._llm, self._lib
        n = common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        if n == len(tokens):
            n -= 1  # evaluate the last prompt token again: sampling needs its fresh logits
        if n > 0:
            memory = lib.llama_get_memory(llm.ctx)
            # Without swa_full, sliding-window layers keep only the last ~n_swa + n_ubatch cells: going back
            # further leaves the first new token without the cells it attends to, and llama.cpp then silently
            # computes a wrong reply. Recurrent memories cannot drop a suffix at all. Both: start over.
            pos_min = lib.llama_memory_seq_pos_min(memory, 0)
            swa_gap = self._n_swa > 0 and not 0 <= pos_min <= max(0, n - self._n_swa)
            if swa_gap or not lib.llama_memory_seq_rm(memory, -1, n, -1):
                n = 0
        if n == 0:
            llm.reset()
        llm.n_tokens = n  # Llama.eval() drops KV cells from here on before it decodes
        return n


def common_prefix(cached: Any, tokens: list[int]) -> int:
    """Length of the common prefix of a numpy token array and a token list."""
    import numpy as np

    m = min(len(cached), len(tokens))
    if m == 0:
        return 0
    diff = np.flatnonzero(np.asarray(cached[:m]) != np.asarray(tokens[:m]))
    return int(diff[0]) if diff.size else m
