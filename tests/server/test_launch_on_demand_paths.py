"""Launch-on-demand loads only what the catalog knows (issue 18, item 3): catalog ids, aliases, served names and
files inside models_dir (symlinks resolved). Every other name is one 404 whether or not it exists, no error text
echoes file bytes, and a failed launch leaves no instance behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from engines.adapters.fake import FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.errors import BadModelFile
from engines.manager import EngineManager
from tests.engines.gguf_corpus import write_gguf
from tests.engines.server_fixture import Served, served

USER = [{"role": "user", "content": "hello"}]
SECRET = "s3cretuser:x:0:0:Secret User:/home/s3cretuser:/bin/zsh\n"
ON_DEMAND = ServeConfig(launch_on_demand=True)


@pytest.fixture
def disk(tmp_path: Path) -> dict[str, Path]:
    """A models folder with one GGUF, and beside it what a client must not reach through it."""
    models = tmp_path / "models"
    outside = tmp_path / "outside"
    write_gguf(models / "little.gguf", name="little")
    write_gguf(outside / "stranger.gguf", name="stranger")
    (outside / "shadow").write_text(SECRET)
    (outside / "folder").mkdir()
    (models / "link.gguf").symlink_to(outside / "stranger.gguf")
    (models / "passwd.gguf").write_text(SECRET)  # inside, but no model
    return {"models": models, "outside": outside}


def chat(s: Served, model: str) -> httpx.Response:
    return httpx.post(f"{s.url}/chat/completions", json={"model": model, "messages": USER}, timeout=30)


def fake_manager() -> EngineManager:
    return EngineManager(engine_factory=lambda name: FakeEngine())


def test_names_outside_the_catalog_and_models_dir_are_one_404(disk: dict[str, Path]) -> None:
    models, outside = disk["models"], disk["outside"]
    refused = [
        str(outside / "shadow"),  # exists, not a model
        str(outside / "stranger.gguf"),  # a real GGUF, outside models_dir
        str(outside / "folder"),  # a folder (would start a transformers load)
        str(outside / "missing.gguf"),  # does not exist
        str(models / "link.gguf"),  # inside by name, outside once the symlink is resolved
        "link.gguf",
        str(models / ".." / "outside" / "stranger.gguf"),
        "../outside/stranger.gguf",
        str(models),  # the folder itself
        "no-such-model",
    ]
    manager = fake_manager()
    with served({}, serve=ON_DEMAND, manager=manager, models_dir=models) as s:
        answers = {name: chat(s, name) for name in refused}
        left = manager.instances()
    assert {n: r.status_code for n, r in answers.items()} == dict.fromkeys(refused, 404)
    # One message for all: with the name taken out, nothing tells an existing path from a missing one.
    messages = {str(r.json()["error"]["message"]).replace(repr(n), "NAME") for n, r in answers.items()}
    assert len(messages) == 1, messages
    assert all(r.json()["error"]["code"] == "model_not_found" for r in answers.values())
    assert left == []


def test_files_inside_models_dir_and_aliases_still_launch(disk: dict[str, Path]) -> None:
    models = disk["models"]
    config = replace(default_config(), aliases={"lil": str(models / "little.gguf")})
    for name in ("little.gguf", str(models / "little.gguf"), "lil"):
        manager = fake_manager()
        with served({}, serve=ON_DEMAND, manager=manager, config=config, models_dir=models) as s:
            answer = chat(s, name)
        assert answer.status_code == 200, (name, answer.text)


def test_a_file_that_is_no_model_is_refused_without_its_bytes_and_leaves_nothing(disk: dict[str, Path]) -> None:
    manager = EngineManager()  # the real engines: llama.cpp checks the header in Python before loading
    with served({}, serve=ON_DEMAND, manager=manager, models_dir=disk["models"]) as s:
        answer = chat(s, str(disk["models"] / "passwd.gguf"))
        left = manager.instances()
    assert answer.status_code == 503, answer.text
    assert "not a GGUF file" in answer.text
    assert "s3cret" not in answer.text and "b'" not in answer.text
    assert left == []


def test_a_failed_launch_leaves_no_instance_behind(disk: dict[str, Path]) -> None:
    failing = EngineManager(engine_factory=lambda name: FakeEngine(load_error=BadModelFile("little", "broken")))
    with served({}, serve=ON_DEMAND, manager=failing, models_dir=disk["models"]) as s:
        answers = [chat(s, str(disk["models"] / "little.gguf")).status_code for _ in range(3)]
        left = failing.instances()
        stopped = failing.stopped()
    assert answers == [503, 503, 503]
    assert left == []  # not three error rows
    assert len(stopped) == 3 and all("launch on demand" in (i.stop_reason or "") for i in stopped)
