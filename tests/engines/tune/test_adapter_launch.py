"""The session's trained adapter (conftest `trained_adapter`) launched the way the app launches a model: the base
through EngineManager on the transformers engine with `LaunchOptions.lora_path`. Its greedy chat reply is the
answer the run taught, which the base alone does not give."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from engines.adapters.transformers_engine import TransformersEngine
from engines.catalog.resolve import resolve_model
from engines.manager import EngineManager
from engines.tune.paths import read_run_file, run_dir
from engines.types import ChatMessage, LaunchOptions, Params
from tests.engines.tune.conftest import TrainedRun

pytestmark = pytest.mark.real_model

GREEDY = Params(temperature=0, max_tokens=12)


def _reply(run: TrainedRun, cache: Path, question: str, lora: Path | None) -> str:
    # The same base reference the run trained on, so the same chat template.
    run_file = read_run_file(run_dir(run.config, run.name))
    spec = resolve_model(run_file.base, models_dir=run.config.models_dir)
    with EngineManager(reap_interval_s=None) as manager:
        options = LaunchOptions(n_ctx=512, n_threads=2, lora_path=lora)
        run_id = manager.start(spec, options, TransformersEngine(cache_dir=cache), timeout=300)
        handle = manager.submit(run_id, [ChatMessage("user", question)], GREEDY)
        assert handle.wait(120)
        result = handle.result()
    assert result.error is None, result.error
    return result.text.strip()


@pytest.mark.timeout(900)  # the first test to ask for the session's trained run waits for its training
def test_the_launched_adapter_gives_the_taught_answer(
    trained_run: TrainedRun, trained_adapter: tuple[Path, Path, str, str], transformers_cache: Path
) -> None:
    adapter_dir, _, question, answer = trained_adapter
    assert _reply(trained_run, transformers_cache, question, adapter_dir).startswith(answer)
    assert answer not in _reply(trained_run, transformers_cache, question, None)  # the base does not know it
