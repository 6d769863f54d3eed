"""TransformersEngine on the real Gemma 3 270M GGUF on CPU (converted once per module), and the conversion cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from engines.adapters import transformers_convert
from engines.adapters.transformers_engine import TransformersEngine
from engines.errors import (
    BadModelFile,
    BadRequest,
    CapabilityNotSupported,
    InstanceNotReady,
)
from engines.stop_text import split_at_stop
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params, StreamEvent

HELLO = [ChatMessage("user", "Say hello")]
STORY = [ChatMessage("user", "Write a long story about a dragon who learns to bake bread.")]
OPTIONS = LaunchOptions(n_ctx=1024, n_threads=2)
CATALOG_STOP = "\nQuestion:"


def _spec(path: Path, *, stop: tuple[str, ...] = (CATALOG_STOP,), fmt: Literal["gguf", "hf"] = "gguf") -> ModelSpec:
    """Gemma as the catalog resolves it: the GGUF has no chat template, the catalog's base-qa one is used."""
    return ModelSpec(
        id="gemma-3-270m",
        path=path,
        format=fmt,
        chat_template=load_builtin_template("base-qa"),
        engines=("transformers",),
        stop=stop,
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transformers-cache")


@pytest.fixture(scope="module")
def progress_lines() -> list[str]:
    return []


@pytest.fixture(scope="module")
def engine(gemma_path: Path, cache_dir: Path, progress_lines: list[str]) -> Iterator[TransformersEngine]:
    """Gemma loaded once for the module; this first load converts the GGUF into `cache_dir`."""
    eng = TransformersEngine(cache_dir=cache_dir, progress=progress_lines.append)
    eng.load(_spec(gemma_path), OPTIONS)
    yield eng
    eng.unload()


def _run(
    engine: TransformersEngine,
    messages: Sequence[ChatMessage],
    params: Params,
    cancel: threading.Event | None = None,
) -> tuple[str, Done]:
    events: list[StreamEvent] = list(engine.chat(messages, params, cancel or threading.Event()))
    done = events[-1]
    assert isinstance(done, Done), events
    assert all(isinstance(e, Delta) and e.text for e in events[:-1])
    return "".join(e.text for e in events[:-1] if isinstance(e, Delta)), done


def _raw_greedy(
    engine: TransformersEngine, messages: Sequence[ChatMessage], max_new_tokens: int
) -> tuple[str, list[int]]:
    """Plain model.generate() on the same prompt tokens: the decoded reply and the generated ids."""
    import torch

    tokens = engine.tokenize_prompt(messages)
    ids = torch.tensor([tokens])
    out = engine.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=engine.tokenizer.pad_token_id,
    )
    generated = out[0, len(tokens) :].tolist()
    return engine.tokenizer.decode(generated, skip_special_tokens=True), generated


def _generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "transformers-generate"]


# -- conversion cache -------------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_first_load_converts_the_gguf_into_the_cache(
    engine: TransformersEngine, cache_dir: Path, gemma_path: Path, progress_lines: list[str]
) -> None:
    assert any("converting" in line for line in progress_lines)
    folder = engine.model_dir
    assert folder is not None and folder.parent == cache_dir
    assert len(folder.name) == 64  # named by the GGUF's sha256
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (folder / name).is_file(), name
    marker = json.loads((folder / transformers_convert.MARKER).read_text())
    assert marker["sha256"] == folder.name
    assert not list(cache_dir.glob(".*.tmp"))  # the temporary folder was renamed into place
    hashes = json.loads((cache_dir / transformers_convert.HASHES).read_text())
    assert hashes[os.path.realpath(gemma_path)]["sha256"] == folder.name


@pytest.mark.real_model
def test_second_load_reads_the_cache_without_converting_or_hashing(
    engine: TransformersEngine, cache_dir: Path, gemma_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_conversion(gguf: Path, out_dir: Path) -> None:
        raise AssertionError("the cached conversion should have been used")

    def no_hashing(*args: object) -> None:
        raise AssertionError("the cached sha256 should have been used")

    monkeypatch.setattr(transformers_convert, "convert_gguf", no_conversion)
    monkeypatch.setattr(transformers_convert, "hashlib", types.SimpleNamespace(sha256=no_hashing))
    lines: list[str] = []
    second = TransformersEngine(cache_dir=cache_dir, progress=lines.append)
    second.load(_spec(gemma_path), OPTIONS)
    try:
        assert second.model_dir == engine.model_dir
        assert not any("converting" in line for line in lines)
        text, done = _run(second, HELLO, Params(temperature=0, max_tokens=3))
        assert text == _run(engine, HELLO, Params(temperature=0, max_tokens=3))[0]
        assert done.usage.completion_tokens == 3
    finally:
        second.unload()
        second.unload()  # safe twice
    with pytest.raises(InstanceNotReady):
        list(second.chat(HELLO, Params(), threading.Event()))


@pytest.mark.real_model
def test_the_converted_folder_loads_as_an_hf_model(engine: TransformersEngine) -> None:
    assert engine.model_dir is not None
    hf = TransformersEngine()
    hf.load(_spec(engine.model_dir, fmt="hf"), OPTIONS)
    try:
        assert (
            _run(hf, HELLO, Params(temperature=0, max_tokens=3))[0]
            == _run(engine, HELLO, Params(temperature=0, max_tokens=3))[0]
        )
    finally:
        hf.unload()


def _fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + os.urandom(3 << 20))
    return path


def test_sha256_is_cached_by_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    path = _fake_gguf(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert transformers_convert.file_sha256(path, cache) == expected

    def no_hashing(*args: object) -> None:
        raise AssertionError("hashed again")

    monkeypatch.setattr(transformers_convert, "hashlib", types.SimpleNamespace(sha256=no_hashing))
    assert transformers_convert.file_sha256(path, cache) == expected
    monkeypatch.undo()
    with path.open("ab") as f:  # a changed file is hashed again
        f.write(b"more")
    assert transformers_convert.file_sha256(path, cache) == hashlib.sha256(path.read_bytes()).hexdigest()


def _counting_converter(calls: list[Path]) -> object:
    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    return convert


def test_a_half_written_cache_is_ignored_and_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fake_gguf(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    sha = transformers_convert.file_sha256(path, cache)
    half = cache / sha  # a final folder without the completion marker
    half.mkdir()
    (half / "config.json").write_text("{}")
    (half / "model.safetensors").write_bytes(b"truncated")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache / f".{sha}.{dead.pid}.abcd1234.tmp"  # what a killed conversion leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    calls: list[Path] = []
    monkeypatch.setattr(transformers_convert, "convert_gguf", _counting_converter(calls))

    folder = transformers_convert.ensure_converted(path, cache)

    assert folder == half and len(calls) == 1
    assert transformers_convert.is_complete(folder)
    assert not (folder / "model.safetensors").exists()  # the half-written file went with the old folder
    assert not stale.exists() and not list(cache.glob(".*.tmp"))
    transformers_convert.ensure_converted(path, cache)  # complete now: not converted again
    assert len(calls) == 1


def test_a_failed_conversion_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fake_gguf(tmp_path)
    cache = tmp_path / "cache"

    def failing(gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed half-way

    monkeypatch.setattr(transformers_convert, "convert_gguf", failing)
    with pytest.raises(KeyboardInterrupt):
        transformers_convert.ensure_converted(path, cache)
    assert [p.name for p in cache.iterdir()] == [transformers_convert.HASHES]


# -- chat -------------------------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_greedy_reply_streams_what_raw_generate_produces(engine: TransformersEngine) -> None:
    text, done = _run(engine, HELLO, Params(temperature=0, seed=1, max_tokens=3))
    raw, ids = _raw_greedy(engine, HELLO, 3)
    assert text.strip() and text == raw.lstrip()
    assert done.finish_reason == "length"
    assert done.usage.prompt_tokens == len(engine.tokenize_prompt(HELLO)) > 0
    assert done.usage.completion_tokens == len(ids) == 3


@pytest.mark.real_model
def test_the_catalog_stop_sequence_ends_the_reply(engine: TransformersEngine) -> None:
    text, done = _run(engine, HELLO, Params(temperature=0, max_tokens=16))
    raw, _ = _raw_greedy(engine, HELLO, 16)
    assert CATALOG_STOP in raw  # the base model goes on to ask itself the next question
    assert text == split_at_stop(raw.lstrip(), [CATALOG_STOP])[0]
    assert done.finish_reason == "stop"
    assert 0 < done.usage.completion_tokens < 16  # generation ended at the stop, not at max_tokens


@pytest.mark.real_model
def test_a_request_stop_sequence_is_cut_on_the_token_that_completes_it(engine: TransformersEngine) -> None:
    full, ids = _raw_greedy(engine, HELLO, 6)
    word = full.split()[1]  # e.g. "my" in "Hello, my name is"
    n_through_word = next(k for k in range(1, len(ids) + 1) if word in engine.tokenizer.decode(ids[:k]))
    text, done = _run(engine, HELLO, Params(temperature=0, max_tokens=30, stop=(word,)))
    assert text == full.lstrip()[: full.lstrip().index(word)]
    assert done.finish_reason == "stop"
    assert done.usage.completion_tokens == n_through_word


@pytest.mark.real_model
def test_seeded_sampling_is_reproducible(engine: TransformersEngine) -> None:
    params = Params(temperature=0.9, top_p=0.9, top_k=50, seed=7, max_tokens=8, stop=())
    first, _ = _run(engine, STORY, params)
    second, _ = _run(engine, STORY, params)
    assert first and first == second


@pytest.mark.real_model
def test_cancel_mid_generation_ends_with_cancelled_and_joins_the_thread(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    events: list[StreamEvent] = []
    for event in engine.chat(STORY, Params(temperature=0, max_tokens=200), cancel):
        events.append(event)
        if isinstance(event, Delta):
            cancel.set()
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "cancelled"
    assert done.usage.completion_tokens < 20  # stopped within a token or two of the cancel, not at 200
    assert not _generate_threads()


@pytest.mark.real_model
def test_cancel_before_start_generates_nothing(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    events = list(engine.chat(STORY, Params(max_tokens=50), cancel))
    assert len(events) == 1 and isinstance(events[0], Done)
    assert events[0].finish_reason == "cancelled" and events[0].usage.completion_tokens == 0


@pytest.mark.real_model
def test_closing_the_stream_early_stops_generate(engine: TransformersEngine) -> None:
    stream = engine.chat(STORY, Params(temperature=0, max_tokens=200), threading.Event())
    assert isinstance(next(stream), Delta)
    stream.close()
    assert not _generate_threads()


@pytest.mark.real_model
def test_a_gguf_without_a_template_says_where_to_choose_one(gemma_path: Path, tmp_path: Path) -> None:
    bare = replace(_spec(gemma_path), chat_template=None)
    with pytest.raises(BadModelFile, match="choose one in the launch dialog"):
        TransformersEngine(cache_dir=tmp_path).load(bare, OPTIONS)  # refused before the slow conversion
    assert not any(tmp_path.iterdir())


def test_a_template_chosen_at_launch_is_used_and_named(
    engine: TransformersEngine, gemma_path: Path, cache_dir: Path
) -> None:
    said: list[str] = []
    chosen = TransformersEngine(cache_dir=cache_dir, progress=said.append)  # the module's conversion is reused
    chosen.load(replace(_spec(gemma_path), chat_template=None), replace(OPTIONS, chat_template="chatml"))
    try:
        assert "chat template: ChatML (chosen at launch)" in said
        assert chosen.spec is not None and "<|im_end|>" in chosen.spec.stop
        _, done = _run(chosen, HELLO, Params(max_tokens=8, temperature=0))
        assert done.usage.completion_tokens > 0
    finally:
        chosen.unload()


def test_json_schema_is_refused(engine: TransformersEngine) -> None:
    with pytest.raises(CapabilityNotSupported, match="json_schema"):
        list(engine.chat(HELLO, Params(json_schema='{"type": "object"}'), threading.Event()))


@pytest.mark.real_model
def test_embeddings_are_unit_length_and_deterministic(engine: TransformersEngine) -> None:
    a, b = engine.embed(["The cat sat on the mat.", "Stock markets fell sharply today."])
    assert len(a) == len(b) == engine.model.config.hidden_size
    assert abs(sum(x * x for x in a) - 1) < 1e-4
    assert engine.embed(["The cat sat on the mat."])[0] == pytest.approx(a, abs=1e-5)
    assert a != b


@pytest.mark.real_model
def test_footprint_counts_parameter_bytes(engine: TransformersEngine) -> None:
    expected = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    footprint = engine.footprint()
    assert footprint.ram_bytes == expected > 1_000_000_000  # 268M float32 parameters
    assert footprint.vram_bytes is None and engine.vram_in_use() is None


# -- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_bitsandbytes_quantization_on_cpu_is_a_clear_error(gemma_path: Path, tmp_path: Path, quantization: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    engine = TransformersEngine(cache_dir=tmp_path)
    with pytest.raises(BadRequest, match="needs a CUDA GPU and the 'bitsandbytes' package"):
        engine.load(_spec(gemma_path), LaunchOptions(quantization=quantization))
    assert list(tmp_path.iterdir()) == []  # refused before any hashing or conversion


def test_unknown_device_dtype_and_missing_cuda_are_bad_requests(gemma_path: Path, tmp_path: Path) -> None:
    import torch

    engine = TransformersEngine(cache_dir=tmp_path)
    with pytest.raises(BadRequest, match="'cpu', 'cuda', 'cuda:N' or 'auto'"):
        engine.load(_spec(gemma_path), LaunchOptions(device="tpu"))
    with pytest.raises(BadRequest, match="float32, bfloat16 or float16"):
        engine.load(_spec(gemma_path), LaunchOptions(dtype="int3"))
    if not torch.cuda.is_available():
        with pytest.raises(BadRequest, match="no usable CUDA device"):
            engine.load(_spec(gemma_path), LaunchOptions(device="cuda:0"))


def test_a_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(BadModelFile, match="pickle") as info:
        TransformersEngine(cache_dir=tmp_path / "cache").load(_spec(folder, fmt="hf"), OPTIONS)
    assert "safetensors" in str(info.value)


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match=r"config\.json"):
        TransformersEngine(cache_dir=tmp_path / "cache").load(_spec(tmp_path, fmt="hf"), OPTIONS)


def test_importing_the_adapter_loads_neither_torch_nor_transformers() -> None:
    code = (
        "import json, sys\n"
        "import engines.adapters.transformers_engine, engines.adapters.transformers_convert\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=root
    )
    assert json.loads(result.stdout) == []


def test_tools_and_past_calls_reach_the_prompt(engine: TransformersEngine) -> None:
    """transformers takes tools through the chat template (Gemma's has no tool support: they go in the system
    turn), past calls and results render, and the reply to a tool result streams; calls it writes are read out
    of its text by the engine layer (engines.shaper), as for llama.cpp. Without a grammar it cannot force a
    call: it does not declare JSON_SCHEMA, so the manager refuses tool_choice "required" (tests/engines/tools)."""
    from engines.types import Capability, Tool, ToolCall

    weather = Tool("get_weather", "The weather in a city", '{"type": "object", "properties": {"city": {}}}')
    ask = [ChatMessage("user", "Weather in Paris?")]
    assert len(engine.tokenize_prompt(ask, tools=(weather,))) > len(engine.tokenize_prompt(ask)) + 20
    history = [
        *ask,
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "18 C", tool_call_id="call_1", name="get_weather"),
    ]
    text, done = _run(engine, history, Params(temperature=0, max_tokens=8, tools=(weather,)))
    assert text and done.usage.prompt_tokens > len(engine.tokenize_prompt(ask))
    assert not engine.supports(Capability.JSON_SCHEMA) and not engine.supports(Capability.TOOLS)
