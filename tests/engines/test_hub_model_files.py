"""A repo listing grouped into the models a user picks: single and split GGUFs, projectors, safetensors sets."""

from __future__ import annotations

from engines.downloads.hf_repo import RepoFile, RepoListing
from engines.hub.model_files import expected_parts, model_files, part_number

COMMIT = "a" * 40


def listing(*files: tuple[str, int]) -> RepoListing:
    return RepoListing("org/m", COMMIT, tuple(RepoFile(path, size, "b" * 64, None) for path, size in files))


def test_quantizations_are_listed_smallest_first_with_the_projector_attached() -> None:
    models = model_files(
        listing(
            ("README.md", 10),
            ("m-Q8_0.gguf", 800),
            ("m-Q4_K_M.gguf", 400),
            ("mmproj-m-bf16.gguf", 60),
            ("mmproj-m-f16.gguf", 61),
        )
    )
    assert [m.name for m in models] == ["m-Q4_K_M.gguf", "m-Q8_0.gguf"]
    assert [m.quantization_hint for m in models] == ["Q4_K_M", "Q8_0"]
    assert all(m.projector is not None and m.projector.path == "mmproj-m-f16.gguf" for m in models)
    assert models[0].size_bytes == 400 and models[0].download_bytes == 461
    assert [f.path for f in models[0].files] == ["m-Q4_K_M.gguf", "mmproj-m-f16.gguf"]


def test_split_parts_are_one_model_with_the_summed_size() -> None:
    models = model_files(
        listing(
            ("q8/m-Q8_0-00002-of-00003.gguf", 300),
            ("q8/m-Q8_0-00001-of-00003.gguf", 300),
            ("q8/m-Q8_0-00003-of-00003.gguf", 100),
            ("m-Q2_K.gguf", 200),
        )
    )
    assert [(m.name, m.kind) for m in models] == [("m-Q2_K.gguf", "gguf"), ("q8/m-Q8_0", "gguf-split")]
    split = models[1]
    assert [part_number(p) for p in split.parts] == [1, 2, 3]
    assert split.size_bytes == 700 and expected_parts(split) == 3


def test_a_split_missing_a_part_still_says_how_many_it_needs() -> None:
    (split,) = model_files(listing(("m-00001-of-00004.gguf", 1), ("m-00003-of-00004.gguf", 1)))
    assert len(split.parts) == 2 and expected_parts(split) == 4


def test_safetensors_sets_per_folder_take_the_transformers_layout_and_small_files() -> None:
    models = model_files(
        listing(
            ("config.json", 1),
            ("model-00001-of-00002.safetensors", 500),
            ("model-00002-of-00002.safetensors", 400),
            ("consolidated.safetensors", 900),
            ("model.safetensors.index.json", 2),
            ("tokenizer.json", 3),
            ("tokenizer_config.json", 4),
            ("adapter/adapter_model.safetensors", 5),
        )
    )
    assert len(models) == 1  # the adapter folder has no config.json: not a model
    (model,) = models
    assert model.name == "." and model.kind == "safetensors"
    assert [p.path for p in model.parts] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert model.size_bytes == 900 and model.download_bytes == 900 + 1 + 2 + 3 + 4
    assert "consolidated.safetensors" not in [f.path for f in model.files]


def test_an_unlisted_size_makes_the_total_unknown() -> None:
    (model,) = model_files(RepoListing("org/m", COMMIT, (RepoFile("m-Q4_0.gguf", None, None, None),)))
    assert model.size_bytes is None and model.download_bytes is None


def test_labels_say_what_a_model_is_made_of() -> None:
    models = model_files(
        listing(
            ("m-Q4_0.gguf", 1),
            ("big-00001-of-00002.gguf", 5),
            ("big-00002-of-00002.gguf", 5),
            ("config.json", 1),
            ("model.safetensors", 20),
            ("sub/config.json", 1),
            ("sub/model-00001-of-00002.safetensors", 30),
            ("sub/model-00002-of-00002.safetensors", 30),
        )
    )
    assert [m.label for m in models] == [
        "m-Q4_0.gguf",
        "big (2 parts)",
        "safetensors (1 shard)",
        "sub (safetensors, 2 shards)",
    ]
