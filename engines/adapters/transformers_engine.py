"""Hugging Face transformers engine: safetensors model folders, and GGUFs converted once (see transformers_convert).

Process-wide effects, because torch has no per-model equivalent:
- `LaunchOptions.n_threads` calls `torch.set_num_threads`, which every model in the process then shares;
- a seed (`Params.seed`, else `LaunchOptions.seed`) calls `torch.manual_seed` before the request, since
  `generate()` samples from torch's global generator.

Safety: `trust_remote_code` is always False (neither ModelSpec nor LaunchOptions has a field to ask for a
model's own Python code), weights load from safetensors only (`use_safetensors=True`; a folder holding only
pickle `.bin` / `.pt` weights is refused, since unpickling can run arbitrary code), and nothing is fetched
from the network (`local_files_only=True`).

torch and transformers are imported inside the methods that need them, never at module import.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters import transformers_adapter, transformers_convert, transformers_whisper
from engines.adapters.base import Engine
from engines.adapters.transformers_batch import TransformersBatch
from engines.adapters.transformers_embed import embed_texts
from engines.adapters.transformers_generate import (
    end_of_generation_ids,
    generate_kwargs,
    make_criterion,
    special_token_ids,
    tokenizer_template,
)
from engines.adapters.transformers_load import (
    check_folder,
    describe,
    load_plan,
    load_weights,
    require_packages,
)
from engines.adapters.transformers_memory import parameter_footprint, reserved_vram
from engines.errors import (
    BadModelFile,
    BadRequest,
    Cancelled,
    CapabilityNotSupported,
    ContextLengthExceeded,
    InstanceNotReady,
    ModelNotFound,
)
from engines.reasoning import prompt_opens_thinking
from engines.stop_text import StopText
from engines.templates.chat import NO_TEMPLATE, TEMPLATE_STOPS, compile_template, pick_template, render_chat
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    Error,
    FinishReason,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    Reasoning,
    StreamEvent,
    Tool,
    Usage,
)

if TYPE_CHECKING:
    from engines.audio.types import Audio, TranscribeOptions, Transcript

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    """Models on PyTorch through Hugging Face transformers (CPU, CUDA, or accelerate's device_map="auto").

    `cache_dir` holds GGUF conversions (default: the user cache dir, `llm-tui/transformers`);
    `progress` hears short status lines during a load (hashing, converting, loading), which are also logged.

    Embeddings mean-pool the last hidden state of the loaded model's base network (what `AutoModel` would
    load from the same folder, without a second copy of the weights) over the attention mask, L2-normalised.
    For a causal LM these are usable similarity vectors but not those of a trained embedding model.

    A Whisper folder loads as speech to text instead (see transformers_whisper): TRANSCRIBE, and nothing else.
    """

    name: ClassVar[str] = "transformers"
    capabilities: ClassVar[Capability] = (
        Capability.CHAT
        | Capability.STREAM
        | Capability.EMBED
        | Capability.PARALLEL
        | Capability.LORA
        | Capability.SCORE
    )
    formats: ClassVar[tuple[str, ...]] = ("hf", "gguf")

    def __init__(self, *, cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.cache_dir = cache_dir
        self.progress = progress
        self.spec: ModelSpec | None = None
        self.model_dir: Path | None = None
        """The folder the model was loaded from (for a GGUF: its converted copy in the cache)."""
        self._options = LaunchOptions()
        self._model: Any = None
        self._tokenizer: Any = None
        self._template = ""
        self._bos_text = self._eos_text = ""
        self._bos_id: int | None = None
        self._add_bos = False
        self._eos_ids: list[int] = []
        self._pad_id: int | None = None
        self._n_ctx = 0
        self._cuda = False
        self._generate_thread: threading.Thread | None = None
        self._whisper: transformers_whisper.Whisper | None = None
        self._batch: TransformersBatch | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Load a safetensors folder (format "hf") or a GGUF (converted once, then read from the cache)."""
        self.unload()
        require_packages()
        if spec.path is None:
            raise ModelNotFound(f"{spec.id}: no model file or folder to load")
        path = Path(spec.path)
        plan = load_plan(options)  # bad options fail before any slow work
        if options.lora_path is not None:  # a bad adapter folder or a missing peft fails before the weights load
            transformers_adapter.read_adapter_config(Path(options.lora_path))
            transformers_adapter.require_peft()
        if spec.format == "gguf":
            template = spec.chat_template or options.chat_template
            folder = transformers_convert.converted_folder(path, self.cache_dir, self._say, has_template=bool(template))
        elif spec.format == "hf":
            if not path.is_dir():
                raise ModelNotFound(f"model folder not found: {path}")
            check_folder(path)
            folder = path
        else:
            raise BadRequest(f"the transformers engine loads 'hf' folders and 'gguf' files, not {spec.format!r}")

        import torch
        import transformers

        if options.n_threads:
            torch.set_num_threads(options.n_threads)  # process-wide
        self._say(f"loading {folder.name}")
        if spec.format == "hf" and transformers_whisper.is_whisper(folder):
            if options.lora_path is not None:
                raise BadRequest("a LoRA adapter applies to a chat model; this is a Whisper speech model")
            with transformers_convert.quiet_progress_bars():
                self._whisper = transformers_whisper.load_whisper(folder, plan, spec.id)
            self._model = self._whisper.model
            self.spec, self._options, self.model_dir = spec, options, folder
            self._cuda = any(p.device.type == "cuda" for p in self._model.parameters())
            return
        with transformers_convert.quiet_progress_bars():
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    str(folder), local_files_only=True, trust_remote_code=False
                )
            except Exception as exc:
                raise BadModelFile(str(path), f"transformers cannot load its tokenizer: {describe(exc)}") from None
            template, template_name = pick_template(
                tokenizer_template(tokenizer), spec.chat_template, options.chat_template
            )
            if not template:
                raise BadModelFile(str(path), NO_TEMPLATE)
            compile_template(template)
            self._say(f"chat template: {template_name}")
            # A chosen template's turn marker ends replies even where the model's own end token differs.
            spec = replace(spec, stop=(*spec.stop, *TEMPLATE_STOPS.get(options.chat_template or "", ())))
            model = load_weights(transformers.AutoModelForCausalLM, folder, plan, path)
            if options.lora_path is not None:  # merged into the weights, except on a quantized base (it would round)
                self._say(f"applying LoRA adapter {Path(options.lora_path).name}")
                model = transformers_adapter.apply_adapter(
                    model, Path(options.lora_path), merge=plan.quantization is None
                )
        model.eval()
        self._model, self._tokenizer, self._template = model, tokenizer, template
        self.spec, self._options, self.model_dir = spec, options, folder
        self._cuda = any(p.device.type == "cuda" for p in model.parameters())
        self._bos_id = tokenizer.bos_token_id
        self._bos_text = tokenizer.bos_token or ""
        self._eos_text = tokenizer.eos_token or ""
        self._add_bos = self._bos_id is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [
            self._bos_id
        ]
        self._eos_ids = end_of_generation_ids(model, tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self._eos_ids), None)
        limit = getattr(model.config, "max_position_embeddings", None) or options.n_ctx
        self._n_ctx = min(options.n_ctx, int(limit))
        self._batch = TransformersBatch(self, options.parallel) if options.parallel > 1 else None

    def unload(self) -> None:
        """Drop the model and tokenizer and give their memory back; safe to call twice."""
        if self._generate_thread is not None:
            self._generate_thread.join()
            self._generate_thread = None
        had_model = self._model is not None
        self._model = self._tokenizer = self._whisper = self._batch = None
        if had_model:
            gc.collect()
            if self._cuda:
                import torch

                torch.cuda.empty_cache()
        self._cuda = False

    @property
    def model(self) -> Any:
        """The transformers model (None when unloaded), for benchmarks and tests."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer (None when unloaded)."""
        return self._tokenizer

    def supports(self, capability: Capability) -> bool:
        """A loaded Whisper model transcribes and does nothing else; any other model does what the class declares."""
        if self._whisper is not None:
            return capability in Capability.TRANSCRIBE
        return capability in self.capabilities

    def require(self, capability: Capability) -> None:
        """CapabilityNotSupported; on a Whisper model it says the model is speech to text."""
        if self._whisper is not None and not self.supports(capability):
            raise transformers_whisper.not_speech_capability(
                self.name, (capability.name or "").lower(), self._whisper.name
            )
        super().require(capability)

    def footprint(self) -> Footprint:
        """Parameter bytes, split between GPU and host memory by where each parameter lives."""
        return Footprint() if self._model is None else parameter_footprint(self._model, cuda=self._cuda)

    def vram_in_use(self) -> int | None:
        """torch's reserved CUDA memory on the devices the model uses (None on CPU)."""
        return None if self._model is None or not self._cuda else reserved_vram(self._model)

    # -- chat ---------------------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream a reply: generate() runs in a thread, its TextIteratorStreamer is read here."""
        model = self._require_model()
        self._refuse_on_whisper("chat")
        params.validate()
        if params.json_schema is not None:
            raise CapabilityNotSupported(self.name, "json_schema")
        if any(m.images for m in messages):
            raise CapabilityNotSupported(self.name, "vision")
        try:  # a slow template stops at cancel, not only at its limit
            tokens = self.tokenize_prompt(messages, cancel, params.tools)
        except Cancelled:
            yield Done(Usage(), finish_reason="cancelled")
            return
        n_prompt = len(tokens)
        if n_prompt >= self._n_ctx:
            raise ContextLengthExceeded(
                f"the conversation is {n_prompt} tokens but the context holds {self._n_ctx} (and the reply needs "
                "room); shorten it or relaunch with a larger context"
            )
        budget = self._n_ctx - n_prompt
        max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        if cancel.is_set():
            yield Done(Usage(n_prompt, 0), finish_reason="cancelled")
            return
        if self.opens_thinking(tokens):
            yield Reasoning("")  # engines.shaper: the reply starts inside the thinking block

        import torch
        import transformers

        stops = self.stops_for(params)
        eos_ids = self.end_ids(stops)
        halt = threading.Event()  # set here when the streamed text reaches a stop sequence
        streamer = transformers.TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        criterion = make_criterion(transformers, torch, cancel, halt, self._tokenizer, n_prompt, stops)
        kwargs = generate_kwargs(params, max_tokens, eos_ids, self._pad_id)
        seed = params.seed if params.seed is not None else self._options.seed
        if seed is not None:
            torch.manual_seed(seed)  # process-wide: generate() samples from torch's global generator
        device = model.device if hasattr(model, "device") else "cpu"
        input_ids = torch.tensor([tokens], dtype=torch.long, device=device)
        result: dict[str, Any] = {}

        def generate() -> None:
            try:
                result["out"] = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    stopping_criteria=transformers.StoppingCriteriaList([criterion]),
                    **kwargs,
                )
            except BaseException as exc:  # reported as an Error event; the stream must still end
                result["error"] = exc
                streamer.on_finalized_text("", stream_end=True)

        thread = threading.Thread(target=generate, name="transformers-generate", daemon=True)
        self._generate_thread = thread
        thread.start()
        leading = True  # replies never start with the blank the template's last word leaves open
        cut = StopText(stops)
        cancelled = False
        try:
            for text in streamer:
                if leading and text:
                    text = text.lstrip()
                    leading = not text
                if text:
                    if emit := cut.feed(text):
                        yield Delta(emit)
                    if cut.stopped:
                        halt.set()
                        break
                if cancel.is_set():
                    cancelled = True
                    break
        finally:
            halt.set()  # a consumer that stops reading (GeneratorExit) ends generate() at its next token
            thread.join()
            self._generate_thread = None
        cancelled = cancelled or cancel.is_set()
        if "error" in result:
            yield Error(f"transformers generate() failed: {describe(result['error'])}")
            return
        out = result["out"]
        generated = out[0, n_prompt:].tolist()
        ended_on_eos = bool(generated) and generated[-1] in eos_ids
        completion = len(generated) - (1 if ended_on_eos else 0)
        finish: FinishReason
        if cut.stopped or ended_on_eos:
            finish = "stop"
        elif cancelled:
            finish = "cancelled"
        elif len(generated) >= max_tokens:
            finish = "context" if len(generated) >= budget else "length"  # a full window is not max_tokens
        else:
            finish = "stop"  # a stop sequence the token-level check saw first (e.g. across a special token)
        if held := cut.flush():
            yield Delta(held)  # text that looked like the start of a stop sequence, but the reply ended first
        yield Done(Usage(n_prompt, completion), finish_reason=finish)

    def stops_for(self, params: Params) -> tuple[str, ...]:
        """The request's stop texts, then the model's."""
        return tuple(dict.fromkeys((*params.stop, *(self.spec.stop if self.spec else ()))))

    def end_ids(self, stops: Sequence[str]) -> list[int]:
        """Token ids that end a reply: the model's end tokens and stop texts that are one special token."""
        return self._eos_ids + [i for i in special_token_ids(self._tokenizer, stops) if i not in self._eos_ids]

    def batcher(self) -> TransformersBatch | None:
        """Concurrent requests decoded together, when launched with `parallel` > 1."""
        return self._batch

    @property
    def context_size(self) -> int:
        return self._n_ctx

    @property
    def pad_id(self) -> int | None:
        return self._pad_id

    @property
    def device(self) -> Any:
        return self._model.device if hasattr(self._model, "device") else "cpu"

    @property
    def launch_seed(self) -> int | None:
        return self._options.seed

    def opens_thinking(self, tokens: Sequence[int]) -> bool:
        """Whether the prompt ends inside an open `<think>` block (its template opened it)."""
        return prompt_opens_thinking(self._tokenizer.decode(list(tokens[-4:]), skip_special_tokens=False))

    def tokenize_prompt(
        self, messages: Sequence[ChatMessage], cancel: threading.Event | None = None, tools: Sequence[Tool] = ()
    ) -> list[int]:
        """The prompt tokens for `messages`: rendered template, special tokens parsed, exactly one BOS."""
        self._require_model()
        prompt = render_chat(
            self._template, messages, bos_token=self._bos_text, eos_token=self._eos_text, cancel=cancel, tools=tools
        )
        tokens: list[int] = list(self._tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if self._add_bos and self._bos_id is not None and (not tokens or tokens[0] != self._bos_id):
            tokens.insert(0, self._bos_id)
        return tokens

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """Mean-pooled (attention-masked), L2-normalised last hidden states of the model's base network."""
        model = self._require_model()
        self._refuse_on_whisper("embeddings")
        vectors, self.last_embed_tokens = embed_texts(model, self._tokenizer, texts, self._n_ctx, self._pad_id, cancel)
        return vectors

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        """Log-probabilities of `choices` after the raw `prompt`, one forward pass (transformers_score)."""
        from engines.adapters.transformers_score import score_choices

        return score_choices(self, prompt, choices, cancel)

    def transcribe(
        self,
        audio: Audio,
        options: TranscribeOptions,
        cancel: threading.Event,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Speech to text on a loaded Whisper model, 30-second window by window (see transformers_whisper)."""
        self._require_model()
        if self._whisper is None:
            self.require(Capability.TRANSCRIBE)
        assert self._whisper is not None
        return transformers_whisper.transcribe(self._whisper, audio, options, cancel, progress)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        log.info("transformers engine: %s", message)
        if self.progress is not None:
            self.progress(message)

    def _refuse_on_whisper(self, what: str) -> None:
        if self._whisper is not None:
            raise transformers_whisper.not_speech_capability(self.name, what, self._whisper.name)

    def _require_model(self) -> Any:
        if self._model is None:
            raise InstanceNotReady("transformers engine: no model loaded")
        return self._model
