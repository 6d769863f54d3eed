"""A fixed catalog for the catalog screen's tests: real files in models_dir, a curated list, fixed free memory."""

from __future__ import annotations

from pathlib import Path

from engines.catalog.builtin import CatalogEntry
from engines.catalog.discover import Discovery, discover
from engines.catalog.fit import Resources
from engines.catalog.listing import Listing, build_listing
from engines.catalog.local_model import LocalModel, finish_models
from engines.config.load import Config
from tests.engines.gguf_corpus import write_gguf

GB = 10**9


def entry(id: str, name: str, family: str, params: float, size: float, quant: str | None, **kw: object) -> CatalogEntry:
    fmt = str(kw.pop("format", "gguf"))
    return CatalogEntry(
        id=id,
        name=name,
        family=family,
        format=fmt,
        engines=("llama.cpp", "transformers") if fmt == "gguf" else ("transformers",),
        params=int(params * 1e9),
        size_bytes=int(size * GB),
        quantization=quant,
        context_length=int(str(kw.pop("ctx", 8192))),
        repo=f"org/{family}-GGUF" if fmt == "gguf" else f"org/{name.replace(' ', '-')}",
        file=f"{id}.gguf" if fmt == "gguf" else None,
        license="apache-2.0",
        kind=str(kw.pop("kind", "instruct")),
        ollama=str(kw["ollama"]) if "ollama" in kw else None,
    )


ENTRIES = (
    entry("tiny-1b-q4_k_m", "Tiny 1B", "tiny", 1.1, 0.67, "Q4_K_M"),
    entry("tiny-1b-q8_0", "Tiny 1B Q8", "tiny", 1.1, 1.17, "Q8_0"),
    entry("qwen-7b-q4_k_m", "Qwen 7B", "qwen", 7.6, 4.7, "Q4_K_M", ctx=32768, ollama="qwen2.5:7b"),
    entry("mixtral-8x22b-q4_k_m", "Mixtral 8x22B", "mixtral", 141, 85.6, "Q4_K_M", ctx=65536),
    entry("embed-small", "Embed Small", "bert", 0.137, 0.27, None, format="hf", ctx=512, kind="embedding"),
)
RESOURCES = Resources(ram_free_bytes=16 * GB, disk_free_bytes=50 * GB)


def populate(models_dir: Path) -> None:
    """A GGUF matching a curated entry, one that matches none, and a truncated one."""
    write_gguf(models_dir / "tiny-1b-q4_k_m.gguf", "llama", name="Tiny 1B", context_length=8192, blocks=16)
    write_gguf(models_dir / "my-finetune.gguf", "qwen2", name="My finetune", context_length=4096, chat_template="{{x}}")
    data = (models_dir / "my-finetune.gguf").read_bytes()
    (models_dir / "broken.gguf").write_bytes(data[:40])


def fixed_listing(config: Config, n_ctx: int | None) -> Listing:
    """What the screen shows: the files of populate(), an Ollama model, and ENTRIES, against RESOURCES."""
    found = discover(config, include_network=False, hf_cache_dir=config.cache_dir / "no-hf-cache")
    ollama = LocalModel(id="ollama:llama3.2:1b", source="ollama", format="ollama", name="llama3.2:1b", size_bytes=GB)
    discovery = Discovery(finish_models([*found.models, ollama], ENTRIES), ["Ollama at 127.0.0.1:11434: 1 model"])
    return build_listing(config, n_ctx=n_ctx, resources=RESOURCES, catalog=ENTRIES, discovery=discovery)
