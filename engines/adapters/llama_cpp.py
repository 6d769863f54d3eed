"""llama.cpp engine (llama-cpp-python): GGUF chat that never re-evaluates a conversation's history.

Prefix reuse: the context keeps the tokens it has evaluated; a new request
evaluates only what follows the longest common prefix (the new user message
and template glue). Conversations (`session` ids) that share the instance
park their KV state in a bounded LRU when another one takes the context, and
get it back when they return.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters.base import Engine
from engines.adapters.llama_cpp_embed import Embedder
from engines.adapters.llama_cpp_grammar import vetted_grammar
from engines.adapters.llama_cpp_native import (
    INSTALL_HINT,
    clear_log,
    import_llama_cpp,
    kv_estimate,
    load_error,
    physical_cores,
    token_piece,
)
from engines.adapters.llama_cpp_prefix import PrefixCache
from engines.adapters.llama_cpp_reply import Reply, token_logprob
from engines.adapters.llama_cpp_slots import Prepared, SlotScheduler, too_long
from engines.adapters.token_bound import tokenize_within
from engines.errors import (
    BadModelFile,
    Cancelled,
    ContextLengthExceeded,
    EngineUnavailable,
    InstanceNotReady,
    ModelNotFound,
)
from engines.reasoning import prompt_opens_thinking
from engines.templates.chat import NO_TEMPLATE, TEMPLATE_STOPS, compile_template, pick_template, render_chat
from engines.types import (
    Capability,
    ChatMessage,
    Done,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    Reasoning,
    StreamEvent,
    TokenLogprob,
    Tool,
    Usage,
)

if TYPE_CHECKING:
    from engines.requests import RequestHandle

DEFAULT_SESSION_CACHE_BYTES = 512 * 1024 * 1024

log = logging.getLogger(__name__)

# Sampling defaults when a Params field is None (llama-cpp-python's own defaults).
_TEMPERATURE, _TOP_P, _TOP_K, _MIN_P = 0.8, 0.95, 40, 0.05


class LlamaCppEngine(Engine):
    """GGUF models on llama.cpp through llama-cpp-python.

    `selftest=False` skips the child-process native self-test (benchmarks);
    `selftest_cache_dir` holds its verdict (default: the user cache dir);
    `session_cache_bytes` bounds the parked states of inactive conversations;
    `swa_full` keeps a full-size cache for sliding-window layers (Gemma 3), so
    any prefix can be reused, at the cost of KV memory on those layers.
    """

    name: ClassVar[str] = "llama.cpp"
    capabilities: ClassVar[Capability] = (
        Capability.CHAT
        | Capability.STREAM
        | Capability.EMBED
        | Capability.LORA
        | Capability.JSON_SCHEMA
        | Capability.COMPLETION
        | Capability.LOGPROBS
        | Capability.PARALLEL
        | Capability.SPECULATIVE
        | Capability.SCORE
    )
    formats: ClassVar[tuple[str, ...]] = ("gguf",)

    def __init__(
        self,
        *,
        selftest: bool = True,
        selftest_cache_dir: Path | None = None,
        session_cache_bytes: int = DEFAULT_SESSION_CACHE_BYTES,
        swa_full: bool = True,
    ) -> None:
        self.selftest = selftest
        self.selftest_cache_dir = selftest_cache_dir
        self.swa_full = swa_full
        self.prompt_tokens_evaluated = 0
        """Prompt tokens the last request had to evaluate (the rest came from the cache)."""
        self.spec: ModelSpec | None = None
        self._options = LaunchOptions()
        self._llm: Any = None
        self._embedder: Embedder | None = None
        self._lib: Any = None
        self._template = ""
        self._bos_text = self._eos_text = ""
        self._bos_id = -1
        self._add_bos = False
        self._vocab: Any = None
        self._pieces: dict[int, bytes | None] = {}
        self._prefix = PrefixCache(session_cache_bytes)
        self._weights_bytes = self._kv_bytes = 0
        self._slots: SlotScheduler | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Validate the GGUF, self-test the native library once, then load; raises LlmTuiError subclasses."""
        self.unload()
        if spec.path is None:
            raise ModelNotFound(f"{spec.id}: no GGUF file to load")
        path = Path(spec.path)
        if not path.is_file():
            raise ModelNotFound(f"model file not found: {path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise EngineUnavailable(self.name, "Python package 'llama_cpp' is not installed", INSTALL_HINT)
        from engines.catalog.gguf_header import read_gguf_header

        header = read_gguf_header(path)  # BadModelFile before llama.cpp ever sees a malformed file
        template, template_name = pick_template(header.chat_template, spec.chat_template, options.chat_template)
        if not template:
            raise BadModelFile(str(path), NO_TEMPLATE)
        compile_template(template)
        # A chosen template's turn marker ends replies even where the model's own end token differs.
        spec = replace(spec, stop=(*spec.stop, *TEMPLATE_STOPS.get(options.chat_template or "", ())))
        if self.selftest:
            from engines.adapters.selftest import ensure_native_engine_works

            ensure_native_engine_works(self.name, path, self._cache_dir())
        lib = import_llama_cpp()
        threads = options.n_threads or physical_cores()
        slotted = options.parallel > 1 or options.speculative is not None
        # With slots, requests run on the slots' own context; this one only needs to exist (its KV stays small).
        own_ctx = min(options.n_ctx, 512) if slotted else options.n_ctx
        kwargs: dict[str, Any] = {
            "n_ctx": own_ctx,
            "n_batch": min(own_ctx, 512),
            "n_threads": threads,
            "n_threads_batch": threads,
            "n_gpu_layers": options.n_gpu_layers,
            "swa_full": self.swa_full,
            "verbose": False,
        }
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.lora_path is not None:
            kwargs["lora_path"] = str(options.lora_path)
        clear_log()
        try:
            llm = lib.Llama(model_path=str(path), **kwargs)
        except Exception as exc:
            raise load_error(path, options, exc) from None
        self._lib, self._llm, self.spec, self._options, self._template = lib, llm, spec, options, template
        self._vocab = lib.llama_model_get_vocab(llm.model)
        self._bos_id = llm.token_bos()
        self._bos_text = self._token_text(self._bos_id)
        self._eos_text = self._token_text(llm.token_eos())
        self._add_bos = bool(lib.llama_vocab_get_add_bos(self._vocab))
        self._prefix.attach(llm, lib)
        self._weights_bytes = int(lib.llama_model_size(llm.model))
        self._kv_bytes = kv_estimate(header, own_ctx)
        if slotted:
            try:
                self._slots = SlotScheduler(
                    lib,
                    llm,
                    options,
                    threads=threads,
                    swa_full=self.swa_full,
                    prepare=self._prepare,
                    grammar=self._grammar_text,
                    piece_of=self._piece_of,
                    token_bytes=self._token_bytes,
                )
            except Exception as exc:
                self.unload()
                raise load_error(path, options, exc) from None
            self._kv_bytes += kv_estimate(header, options.n_ctx) * self._slots.parallel
        log.info("chat template: %s", template_name)  # the instance's log says which one replies follow

    def unload(self) -> None:
        """Free the model, its contexts and parked states; safe to call twice."""
        if self._slots is not None:
            self._slots.close()
            self._slots = None
        if self._embedder is not None:
            self._embedder.close()
        if self._llm is not None:
            self._llm.close()
        self._llm = self._embedder = None
        self._pieces.clear()
        self._prefix.detach()

    @property
    def llama(self) -> Any:
        """The underlying llama_cpp.Llama (None when unloaded), for benchmarks and tests."""
        return self._llm

    def clear_prompt_cache(self) -> None:
        """Forget the evaluated prefix and every parked conversation: the next request evaluates all its tokens."""
        self._prefix.clear()

    def footprint(self) -> Footprint:
        """Weights + KV cache (estimated from the header) + parked conversation states."""
        if self._llm is None:
            return Footprint()
        total = self._weights_bytes + self._kv_bytes
        layers = self._options.n_gpu_layers
        if layers == 0 or not self._lib.llama_supports_gpu_offload():
            return Footprint(ram_bytes=total + self._prefix.parked.nbytes)
        n_layer = max(1, int(self._lib.llama_model_n_layer(self._llm.model)))
        share = 1.0 if layers < 0 else min(1.0, layers / (n_layer + 1))
        vram = int(total * share)
        return Footprint(ram_bytes=total - vram + self._prefix.parked.nbytes, vram_bytes=vram)

    # -- chat ---------------------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream a reply, evaluating only the prompt tokens that follow what the context already holds."""
        self._require_llm()
        params.validate()
        try:
            prepared = self._prepare_chat(messages, params, cancel)
        except Cancelled:
            yield Done(Usage(), finish_reason="cancelled")
            return
        if self._slots is not None:
            yield from self._slots.run(prepared, params, cancel)
            return
        if prepared.thinking:
            yield Reasoning("")  # engines.shaper: the reply starts inside the thinking block
        yield from self._stream(prepared.tokens, params, cancel, session, prepared.stops)

    def complete(self, prompt: str, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Stream a raw continuation of `prompt` (no chat template; a leading space is kept, as in the text)."""
        self._require_llm()
        params.validate()
        prepared = self._prepare_completion(prompt, params)
        if self._slots is not None:
            yield from self._slots.run(prepared, params, cancel)
            return
        yield from self._stream(prepared.tokens, params, cancel, None, params.stop, strip_leading=False, what="prompt")

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        """Log-probabilities of `choices` after the raw `prompt`, reusing the cached prefix (llama_cpp_score)."""
        from engines.adapters.llama_cpp_score import score_choices

        return score_choices(self, prompt, choices, cancel)

    def batcher(self) -> SlotScheduler | None:
        """The slots, when launched with `parallel` > 1 or speculative decoding."""
        return self._slots

    def _prepare(self, handle: RequestHandle) -> Prepared:
        """A queued request as prompt tokens for a slot (raises Cancelled when its template is stopped)."""
        handle.params.validate()
        if handle.prompt is not None:
            return self._prepare_completion(handle.prompt, handle.params)
        return self._prepare_chat(handle.messages, handle.params, handle.cancel_event)

    def _prepare_chat(self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event) -> Prepared:
        spec_stops = self.spec.stop if self.spec else ()
        # a slow template stops at cancel, not only at its limit
        tokens = self.tokenize_prompt(messages, cancel, params.tools)
        thinking = prompt_opens_thinking(self._llm.detokenize(tokens[-4:], special=True).decode(errors="ignore"))
        return Prepared(tokens, (*params.stop, *spec_stops), thinking=thinking)

    def _prepare_completion(self, prompt: str, params: Params) -> Prepared:
        llm, n_ctx = self._llm, self._options.n_ctx
        tokens, whole = tokenize_within(
            lambda data: llm.tokenize(data, add_bos=self._add_bos, special=True), prompt.encode("utf-8"), n_ctx
        )
        if not whole:  # a giant prompt: refused without tokenizing all of it
            raise ContextLengthExceeded(too_long("prompt", f"over {len(tokens)}", n_ctx))
        return Prepared(tokens, params.stop, strip_leading=False, what="prompt")

    def _stream(
        self,
        tokens: list[int],
        params: Params,
        cancel: threading.Event,
        session: str | None,
        stops: tuple[str, ...],
        *,
        strip_leading: bool = True,
        what: str = "conversation",
    ) -> Iterator[StreamEvent]:
        """Evaluate what the context lacks of `tokens`, then sample: Deltas cut at `stops`, then one Done."""
        llm = self._llm
        n_prompt, n_ctx = len(tokens), llm.n_ctx()
        if n_prompt >= n_ctx:
            raise ContextLengthExceeded(too_long(what, str(n_prompt), n_ctx))
        budget = n_ctx - n_prompt
        max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        if cancel.is_set():
            yield Done(Usage(n_prompt, 0), finish_reason="cancelled")
            return
        # A seeded sampled reply evaluates its prompt from scratch: reusing a cached prefix changes the batches
        # and so the logits, and the same seed would then draw other tokens (greedy picks are not that fragile).
        reproducible = params.seed is not None and params.temperature != 0
        n_past = self._prefix.prepare(tokens, session, reuse=not reproducible)
        self.prompt_tokens_evaluated = n_prompt - n_past
        # Evaluate long prompts in whole batches first, so Stop is honoured between them.
        n_batch = llm.n_batch
        while n_prompt - n_past > n_batch:
            llm.eval(tokens[n_past : n_past + n_batch])
            n_past += n_batch
            if cancel.is_set():
                yield Done(Usage(n_prompt, 0), finish_reason="cancelled")
                return
        seed = params.seed if params.seed is not None else self._options.seed
        llm.set_seed(seed if seed is not None else random.getrandbits(32))
        temperature = _TEMPERATURE if params.temperature is None else params.temperature
        gen = llm.generate(
            tokens[n_past:],
            top_k=_TOP_K if params.top_k is None else params.top_k,
            top_p=_TOP_P if params.top_p is None else params.top_p,
            min_p=_MIN_P,
            temp=temperature,
            repeat_penalty=1.0 if params.repetition_penalty is None else params.repetition_penalty,
            reset=False,
            grammar=self._grammar(params),
        )
        piece_of, top = self._piece_of, params.logprobs
        reply = Reply(n_prompt, max_tokens, budget, stops, strip_leading=strip_leading)
        try:
            for token in gen:
                piece = piece_of(token)
                # The logits that chose `token` are still the context's last ones.
                scored = self._logprob(-1, token, piece, top) if top is not None and piece is not None else None
                if delta := reply.add(piece, scored):
                    yield delta
                if reply.finish is not None:
                    break
                if cancel.is_set():
                    reply.finish = "cancelled"
                    break
        finally:
            gen.close()
        yield from reply.close()

    def _grammar(self, params: Params) -> Any:
        """The GBNF grammar that makes every sampled token keep the reply valid for the JSON schema, or None."""
        if params.json_schema is None:
            return None
        return self._lib.LlamaGrammar.from_string(self._grammar_text(params.json_schema), verbose=False)

    def _grammar_text(self, schema: str) -> str:
        # Built and sampled in a child process first (once per schema): a grammar llama.cpp cannot parse would
        # otherwise be sampled as a null pointer, and kill this process.
        assert self.spec is not None and self.spec.path is not None
        return vetted_grammar(schema, self.spec.path)

    def _logprob(self, idx: int, token: int, piece: bytes, top: int) -> TokenLogprob:
        """`token`'s log-probability under the logits of the batch's `idx`-th output, and the `top` likeliest."""
        ctx = self._llm.ctx
        return token_logprob(
            self._lib.llama_get_logits_ith(ctx, idx), self._llm.n_vocab(), token, piece, top, self._token_bytes
        )

    def _token_bytes(self, token: int) -> bytes:
        """What a token stands for; an end-of-turn token, which has no text, by its name ("<end_of_turn>")."""
        piece = self._piece_of(token)
        return piece if piece is not None else self._token_text(token).encode()

    def tokenize_prompt(
        self, messages: Sequence[ChatMessage], cancel: threading.Event | None = None, tools: Sequence[Tool] = ()
    ) -> list[int]:
        """The prompt tokens for `messages`: rendered template, special tokens parsed, exactly one BOS;
        ContextLengthExceeded for a giant conversation (found without tokenizing all of it)."""
        llm = self._require_llm()
        prompt = render_chat(
            self._template, messages, bos_token=self._bos_text, eos_token=self._eos_text, cancel=cancel, tools=tools
        )
        # The template writes the BOS text itself; add one only when the model wants it and the template forgot.
        n_ctx = self._options.n_ctx
        tokens, whole = tokenize_within(
            lambda data: llm.tokenize(data, add_bos=False, special=True), prompt.encode("utf-8"), n_ctx
        )
        if not whole:
            raise ContextLengthExceeded(too_long("conversation", f"over {len(tokens)}", n_ctx))
        if self._add_bos and self._bos_id >= 0 and (not tokens or tokens[0] != self._bos_id):
            tokens.insert(0, self._bos_id)
        return tokens

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings (engines/adapters/llama_cpp_embed.py): a text past the context is
        refused, never cut; `cancel` stops the work between decodes and inside one."""
        self._require_llm()
        if self._embedder is None:
            assert self.spec is not None and self.spec.path is not None
            o, path = self._options, self.spec.path
            self._embedder = Embedder(self._lib, path, o.n_ctx, o.n_threads or physical_cores(), o.n_gpu_layers)
        vectors, self.last_embed_tokens = self._embedder.embed(texts, cancel)
        return vectors

    # -- helpers ------------------------------------------------------------------------------------------------

    def _require_llm(self) -> Any:
        if self._llm is None:
            raise InstanceNotReady("llama.cpp engine: no model loaded")
        return self._llm

    def _piece_of(self, token: int) -> bytes | None:
        """The bytes a token stands for (None for end-of-generation tokens), memoised per token id."""
        pieces = self._pieces
        if token not in pieces:
            pieces[token] = token_piece(self._lib, self._vocab, token)
        return pieces[token]

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = self._lib.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", "replace") if text else ""

    def _cache_dir(self) -> Path:
        if self.selftest_cache_dir is not None:
            return self.selftest_cache_dir
        import platformdirs

        return platformdirs.user_cache_path("llm-tui")
