"""What a GGUF header says: metadata, tensor table, and the facts derived from them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """A metadata array too long to keep, summarised by item type and length."""

    item_type: str
    length: int


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of the tensor table; shape is in file (ggml) order, fastest-varying first."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int
    n_bytes: int
    n_elements: int


@dataclass(frozen=True, slots=True)
class GgufHeader:
    """Everything in a GGUF file except the tensor data."""

    path: Path
    version: int
    file_size: int
    metadata: dict[str, object]
    tensors: tuple[TensorInfo, ...]
    data_offset: int

    def _int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if isinstance(value, list) and value and all(type(v) is int for v in value):
            return int(max(value))  # per-layer values (e.g. head counts): the largest bounds memory use
        return value if type(value) is int else None

    def _arch_int(self, suffix: str) -> int | None:
        arch = self.architecture
        return None if arch is None else self._int(f"{arch}.{suffix}")

    @property
    def architecture(self) -> str | None:
        """The model architecture (general.architecture), e.g. "gemma3"."""
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        """The model's display name (general.name)."""
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        """The context length the model was trained for."""
        return self._arch_int("context_length")

    @property
    def block_count(self) -> int | None:
        """The number of transformer blocks (layers)."""
        return self._arch_int("block_count")

    @property
    def head_count(self) -> int | None:
        """The number of attention heads (the largest, if it varies by layer)."""
        return self._arch_int("attention.head_count")

    @property
    def head_count_kv(self) -> int | None:
        """The number of key/value heads (the largest, if it varies by layer)."""
        return self._arch_int("attention.head_count_kv")

    @property
    def embedding_length(self) -> int | None:
        """The width of the hidden state."""
        return self._arch_int("embedding_length")

    @property
    def key_length(self) -> int | None:
        """The size of one attention key head, when the file states it."""
        return self._arch_int("attention.key_length")

    @property
    def value_length(self) -> int | None:
        """The size of one attention value head, when the file states it."""
        return self._arch_int("attention.value_length")

    @property
    def vocab_size(self) -> int | None:
        """The number of tokens in the embedded vocabulary."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayInfo):
            return tokens.length
        return len(tokens) if isinstance(tokens, list) else None

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template (tokenizer.chat_template), if any."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def has_chat_template(self) -> bool:
        """Whether the file carries a non-empty chat template."""
        return bool(self.chat_template)

    @property
    def file_type(self) -> str | None:
        """The declared quantization (general.file_type) as a name like "Q4_K_M"."""
        value = self._int("general.file_type")
        return None if value is None else file_type_names().get(value)

    @property
    def quantization(self) -> str | None:
        """The declared file type, else the ggml type holding most bytes among 2-D+ tensors."""
        if self.file_type is not None:
            return self.file_type
        weights: Counter[str] = Counter()
        for tensor in self.tensors:
            if len(tensor.shape) >= 2:
                weights[tensor.ggml_type] += tensor.n_bytes
        return weights.most_common(1)[0][0] if weights else None

    @property
    def parameter_count(self) -> int:
        """The total number of elements over all tensors."""
        return sum(tensor.n_elements for tensor in self.tensors)


@cache
def value_type_names() -> dict[int, str]:
    import gguf  # imports numpy (~150 ms), so only when a file is read

    return {int(t): t.name.lower() for t in gguf.GGUFValueType}


@cache
def ggml_types() -> dict[int, tuple[str, int, int]]:
    import gguf

    return {int(t): (t.name, block, size) for t, (block, size) in gguf.GGML_QUANT_SIZES.items()}


@cache
def file_type_names() -> dict[int, str]:
    import gguf

    names = {int(t): t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in gguf.LlamaFileType}
    names.pop(int(gguf.LlamaFileType.GUESSED), None)
    return names
