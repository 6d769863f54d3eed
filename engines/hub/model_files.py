"""A repo's files as the models a user picks from: one GGUF, a split GGUF's parts, a safetensors set.

`mmproj` projector files (the vision half of a multimodal GGUF) are not models of their own: they ride along
with the repo's GGUFs, and a download of one takes the projector too.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from engines.downloads.hf_repo import RepoFile, RepoListing

Kind = Literal["gguf", "gguf-split", "safetensors"]

_SPLIT = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q[1-8](?:_[0-9A-Z]+)*|F16|BF16|F32|MXFP4)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SAFETENSORS_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One model in a repo: the file or files that make it up, in order."""

    name: str
    """What the user sees: the GGUF's path, a split's base name, or the safetensors folder ("." for the root)."""
    kind: Kind
    parts: tuple[RepoFile, ...]
    projector: RepoFile | None = None
    config: RepoFile | None = None
    """config.json of a safetensors set."""
    extras: tuple[RepoFile, ...] = ()
    """Small files a safetensors model needs beside its weights (tokenizer, generation config, index)."""

    @property
    def size_bytes(self) -> int | None:
        """The weights' bytes, all parts; None when the Hub did not list a part's size."""
        sizes = [p.size for p in self.parts]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def download_bytes(self) -> int | None:
        """What `d` fetches: the weights, the projector and the small files."""
        size = self.size_bytes
        extra = [f.size for f in self.files if f not in self.parts]
        if size is None or any(s is None for s in extra):
            return None
        return size + sum(s for s in extra if s is not None)

    @property
    def files(self) -> tuple[RepoFile, ...]:
        """Every file `d` queues."""
        projector = (self.projector,) if self.projector else ()
        config = (self.config,) if self.config else ()
        return (*config, *self.extras, *self.parts, *projector)

    @property
    def label(self) -> str:
        """What a person calls it: the file, "base (3 parts)", "safetensors (2 shards)"."""
        if self.kind == "gguf-split":
            return f"{self.name} ({len(self.parts)} parts)"
        if self.kind == "safetensors":
            shards = f"{len(self.parts)} shard{'s' if len(self.parts) != 1 else ''}"
            return f"safetensors ({shards})" if self.name == "." else f"{self.name} (safetensors, {shards})"
        return self.name

    @property
    def quantization_hint(self) -> str | None:
        """The quantization its name states ("Q4_K_M"), before the header says for sure."""
        match = _QUANT.search(self.name.rsplit("/", 1)[-1])
        return match.group(1).upper() if match else None


def model_files(listing: RepoListing) -> list[ModelFile]:
    """The models in a repo listing, GGUFs by size then safetensors sets; projectors attached, not listed."""
    by_path = {f.path: f for f in listing.files}
    ggufs = [f for f in listing.files if f.path.lower().endswith(".gguf")]
    projectors = [f for f in ggufs if _is_projector(f.path)]
    models: list[ModelFile] = []
    splits: dict[tuple[str, int], dict[int, RepoFile]] = defaultdict(dict)
    for file in ggufs:
        if _is_projector(file.path):
            continue
        match = _SPLIT.match(file.path)
        if match:
            splits[(match["base"], int(match["count"]))][int(match["no"])] = file
        else:
            models.append(ModelFile(file.path, "gguf", (file,), _projector_for(file.path, projectors)))
    for (base, _count), parts in splits.items():
        ordered = tuple(parts[no] for no in sorted(parts))
        models.append(ModelFile(base, "gguf-split", ordered, _projector_for(base, projectors)))
    models.sort(key=lambda m: (m.size_bytes is None, m.size_bytes or 0, m.name))
    models += _safetensors_sets(listing, by_path)
    return models


def part_number(file: RepoFile) -> int:
    """The part number a split GGUF's name states (1 for a single file)."""
    match = _SPLIT.match(file.path)
    return int(match["no"]) if match else 1


def expected_parts(model: ModelFile) -> int:
    """How many parts a split's names say it has (1 for a single file)."""
    match = _SPLIT.match(model.parts[0].path) if model.kind == "gguf-split" else None
    return int(match["count"]) if match else len(model.parts)


def _is_projector(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def _projector_for(path: str, projectors: list[RepoFile]) -> RepoFile | None:
    """The projector in the same folder, preferring F16 (what llama.cpp's own tools pick), else the first."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    here = [p for p in projectors if (p.path.rsplit("/", 1)[0] if "/" in p.path else "") == folder]
    here.sort(key=lambda p: (not re.search(r"(?<!b)f16", p.path.lower()), p.path))
    return here[0] if here else None


def _safetensors_sets(listing: RepoListing, by_path: dict[str, RepoFile]) -> list[ModelFile]:
    """One model per folder holding config.json and .safetensors weights (the shards the index names)."""
    folders: dict[str, list[RepoFile]] = defaultdict(list)
    for file in listing.files:
        if file.path.endswith(".safetensors"):
            folder = file.path.rsplit("/", 1)[0] if "/" in file.path else ""
            folders[folder].append(file)
    sets = []
    for folder, shards in sorted(folders.items()):
        prefix = f"{folder}/" if folder else ""
        config = by_path.get(prefix + "config.json")
        if config is None:
            continue  # weights without a config (an adapter, a VAE): not a model the engines can load
        extras = tuple(
            by_path[prefix + name]
            for name in (
                _SAFETENSORS_INDEX,
                "generation_config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "tokenizer.model",
                "special_tokens_map.json",
                "chat_template.jinja",
                "chat_template.json",
            )
            if prefix + name in by_path
        )
        # The transformers layout (model.safetensors, model-00001-of-00002.safetensors) over a second copy of the
        # same weights in another layout (Mistral's consolidated.safetensors) in the same folder.
        standard = [f for f in shards if f.path[len(prefix) :].startswith("model")]
        shards = sorted(standard or shards, key=lambda f: f.path)
        sets.append(ModelFile(folder or ".", "safetensors", tuple(shards), config=config, extras=extras))
    return sets
