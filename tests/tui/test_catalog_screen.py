"""The catalog screen driven by keys: filter, sort, context size, delete with confirmation, alias, launch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from engines.catalog.discover import Discovery
from engines.catalog.listing import CatalogRow, Listing, build_listing
from engines.config.load import Config, load_config
from tests.engines.test_download_queue import describe
from tests.tui.catalog_fixture import RESOURCES, entry, fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tui.app import LlmTuiApp
from tui.screens.catalog import CatalogScreen, parse_context
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.launch import LaunchModal
from tui.screens.modals.text_prompt import TextPromptModal
from tui.widgets.model_table import ModelTable

CatalogTest = Callable[[LlmTuiApp, CatalogScreen, Pilot[int]], object]


def catalog_app(make_app: AppFactory) -> LlmTuiApp:
    return make_app(screen="catalog", launch=False, listing=fixed_listing)


def drive(app: LlmTuiApp, test: CatalogTest) -> None:
    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            await pilot.pause()
            await test(app, screen, pilot)  # type: ignore[misc]

    run(main())


def shown(screen: CatalogScreen) -> list[str]:
    return [row.id for row in screen.query_one(ModelTable).rows]


def status(screen: CatalogScreen) -> str:
    return str(screen.query_one("#catalog-status").render())


def detail(screen: CatalogScreen) -> str:
    return " ".join(str(w.render()) for w in screen.query("#detail-about, #detail-fit"))


ALL = [
    "broken",
    "embed-small",
    "ollama:llama3.2:1b",
    "mixtral-8x22b-q4_k_m",
    "my-finetune",
    "qwen-7b-q4_k_m",
    "tiny-1b-q4_k_m",
    "tiny-1b-q8_0",
]


def test_lists_every_source_with_real_metadata_and_fit(make_app: AppFactory, models_dir: Path) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        assert shown(screen) == ALL
        rows = {row.id: row for row in screen.query_one(ModelTable).rows}
        assert rows["tiny-1b-q4_k_m"].source == "local" and rows["tiny-1b-q4_k_m"].layers == 16  # read from the file
        assert rows["broken"].status == "broken" and "truncated" in (rows["broken"].error or "")
        assert rows["mixtral-8x22b-q4_k_m"].fit is not None and not rows["mixtral-8x22b-q4_k_m"].fit.fits
        assert "8 models · 4 here" in status(screen) and "Ollama at 127.0.0.1:11434: 1 model" in status(screen)
        assert "truncated" in detail(screen)  # the cursor starts on the first row: the broken file

    drive(catalog_app(make_app), test)


def test_filter_as_you_type_then_move_and_clear(make_app: AppFactory, models_dir: Path) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash")
        assert screen.focused is screen.filter_input
        seen = []
        for key in "tiny":
            await pilot.press(key)
            seen.append(len(shown(screen)))
        assert seen[-1] == 2 and seen == sorted(seen, reverse=True)
        assert shown(screen) == ["tiny-1b-q4_k_m", "tiny-1b-q8_0"]
        assert "2 of 8 models" in status(screen)
        await pilot.press("space", "q", "8")
        assert shown(screen) == ["tiny-1b-q8_0"]
        await pilot.press("backspace", "backspace", "backspace", "down")  # Down leaves the filter for the list
        assert screen.focused is screen.query_one(ModelTable)
        assert screen.query_one(ModelTable).current is not None
        assert screen.query_one(ModelTable).current.id == "tiny-1b-q8_0"  # type: ignore[union-attr]
        await pilot.press("slash", *"zzz")
        assert shown(screen) == [] and "No model matches" in detail(screen)
        await pilot.press("escape")
        assert shown(screen) == ALL and screen.filter_input.value == ""

    drive(catalog_app(make_app), test)


def test_sort_cycles_name_size_params_and_reverses(make_app: AppFactory, models_dir: Path) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        table = screen.query_one(ModelTable)
        await pilot.press("s")
        sizes = [row.size_bytes for row in table.rows]
        assert sizes[0] == max(s for s in sizes if s) and "sorted by size ↓" in status(screen)
        assert [s for s in sizes if s] == sorted((s for s in sizes if s), reverse=True)
        await pilot.press("S")
        sizes = [row.size_bytes for row in table.rows if row.size_bytes]
        assert sizes == sorted(sizes) and "sorted by size ↑" in status(screen)
        await pilot.press("s")
        params = [row.params for row in table.rows]
        assert table.rows[0].id == "mixtral-8x22b-q4_k_m" and params[-1] is None  # unknown counts go last
        await pilot.press("s")
        assert shown(screen) == ALL and "sorted by name ↑" in status(screen)
        await pilot.click(ModelTable, offset=(82, 0))  # the Size header
        assert "sorted by size ↓" in status(screen)

    drive(catalog_app(make_app), test)


def test_context_size_changes_every_fit_without_a_rescan(make_app: AppFactory, models_dir: Path) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"qwen-7b", "enter")
        qwen = screen.query_one(ModelTable).current
        assert qwen is not None and qwen.fit is not None and "Fit at 4,096 tokens" in detail(screen)
        await pilot.press("plus", "plus", "plus")
        after = screen.query_one(ModelTable).current
        assert after is not None and after.fit is not None
        assert "Fit at 32,768 tokens" in detail(screen) and "fit at 32,768 ctx" in status(screen)
        assert after.fit.ram_bytes > qwen.fit.ram_bytes  # a bigger KV cache
        await pilot.press("c")
        assert isinstance(app.screen, TextPromptModal)
        await pilot.press("ctrl+a", "ctrl+k", *"lots", "enter")
        assert isinstance(app.screen, TextPromptModal)  # refused on the field
        assert "not a number of tokens" in str(app.screen.query_one("#hint").render())
        await pilot.press("ctrl+a", "ctrl+k", *"64k", "enter")
        assert app.screen is screen and "Fit at 65,536 tokens" in detail(screen)
        assert "trained for 32,768 tokens at most" in detail(screen)

    drive(catalog_app(make_app), test)


def test_delete_asks_first_and_only_deletes_local_files(make_app: AppFactory, models_dir: Path) -> None:
    target = models_dir / "my-finetune.gguf"

    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"finetune", "enter", "delete")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert app.screen is screen and target.exists()
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await until(pilot, lambda: not target.exists() and "my-finetune" not in shown(screen), "deleted and rescanned")
        await pilot.press("escape", "slash", *"qwen-7b", "enter", "x")  # a catalog entry: nothing to delete
        assert app.screen is screen
        assert any("cannot be deleted here" in n.message for n in app._notifications)

    drive(catalog_app(make_app), test)
    assert (models_dir / "tiny-1b-q4_k_m.gguf").exists()


def test_alias_is_saved_to_the_config_file_and_shown(
    make_app: AppFactory, models_dir: Path, isolated_dirs: Path
) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"qwen-7b", "enter", "a")
        assert isinstance(app.screen, TextPromptModal)
        await pilot.press(*"two words", "enter")
        assert isinstance(app.screen, TextPromptModal) and "no spaces" in str(app.screen.query_one("#hint").render())
        await pilot.press(*["backspace"] * 9, *"q7", "enter")
        assert app.screen is screen
        assert app.runtime.config.aliases["q7"] == "qwen-7b-q4_k_m" and "q7" in detail(screen)
        path = app.runtime.config.source
        assert path is not None and 'q7 = "qwen-7b-q4_k_m"' in path.read_text()

    drive(catalog_app(make_app), test)
    assert dict(load_config(env={}, cwd=isolated_dirs).aliases) == {"q7": "qwen-7b-q4_k_m"}


def test_launch_asks_how_then_opens_the_chat_and_download_queues_the_file(
    make_app: AppFactory, models_dir: Path
) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"qwen-7b", "enter", "d")
        await until(pilot, lambda: len(app.runtime.downloads.tasks.all()) == 1, "queued")
        (task,) = app.runtime.downloads.tasks.all()
        assert (task.source, task.repo, task.file) == ("hf", "org/qwen-GGUF", "qwen-7b-q4_k_m.gguf")
        assert task.target_path == app.runtime.config.models_dir / "qwen-7b-q4_k_m.gguf"
        assert task.total_bytes is None  # no Hub in this test: the catalog's 4.7 GB is an estimate, not the size
        assert any("Download queued" in (n.title or "") for n in app._notifications)
        await pilot.press("escape", "slash", *"finetune", "enter", "enter")
        assert isinstance(app.screen, LaunchModal)  # how to launch it: engine, device, context…
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "the model is launched")
        assert app.current_mode == "chat"
        assert app.runtime.active is not None and app.runtime.active.model_id == "my-finetune"
        await pilot.press("f2", "escape", "slash", *"ollama", "enter", "enter")  # served: no dialog, straight in
        await until(pilot, lambda: app.current_mode == "chat", "back in the chat")
        await until(pilot, lambda: getattr(app.runtime.active, "model_id", "") == "ollama:llama3.2:1b", "launched")

    drive(catalog_app(make_app), test)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8192", 8192), ("8k", 8192), ("32K", 32768), ("1,024", 1024), ("12", "256"), ("x", "not a number")],
)
def test_parse_context(text: str, expected: int | str) -> None:
    value = parse_context(text)
    assert value == expected if isinstance(expected, int) else expected in str(value)


def test_a_download_that_completes_shows_in_the_catalog_at_once(make_app: AppFactory, models_dir: Path) -> None:
    """`d` on a downloadable row; when the file lands, the catalog (still on screen) lists it as local."""
    from tests.engines.gguf_corpus import write_gguf

    def transfer(url: str, target: Path, **_: object) -> object:
        write_gguf(target, "qwen2", name="Qwen 7B", context_length=32768, blocks=4)
        return None

    app = make_app(screen="catalog", launch=False, listing=fixed_listing, transfer=transfer, describe_hub=describe)

    def row(screen: CatalogScreen) -> str | None:
        return next((r.source for r in screen.query_one(ModelTable).rows if r.id == "qwen-7b-q4_k_m"), None)

    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        assert row(screen) == "catalog"  # not on disk yet: a curated entry to download
        await pilot.press("slash", *"qwen-7b", "enter", "d")
        await until(pilot, lambda: row(screen) == "local", "the finished file is listed as local")
        assert any(n.message == "downloaded qwen-7b-q4_k_m.gguf" for n in app._notifications)
        assert app.screen is screen

    drive(app, test)


def test_o_pulls_a_curated_model_with_ollama_and_refuses_rows_without_one(
    make_app: AppFactory, models_dir: Path
) -> None:
    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"qwen-7b", "enter", "o")
        (task,) = app.runtime.downloads.tasks.all()
        assert (task.source, task.repo, str(task.target_path)) == ("ollama", "qwen2.5:7b", "ollama:qwen2.5:7b")
        assert any("ollama:qwen2.5:7b → Ollama at" in n.message for n in app._notifications)
        await pilot.press("escape", "slash", *"mixtral", "enter", "o")
        assert "names no Ollama build" in list(app._notifications)[-1].message
        await pilot.press("escape", "slash", *"finetune", "enter", "o")
        assert "it is already here" in list(app._notifications)[-1].message
        assert len(app.runtime.downloads.tasks.all()) == 1

    drive(catalog_app(make_app), test)


def test_d_on_a_whole_repo_model_lists_it_on_the_hub_and_queues_every_file_pinned(
    make_app: AppFactory, models_dir: Path, isolated_dirs: Path
) -> None:
    import hashlib
    import os

    from engines.downloads.hf_source import hub_file
    from engines.downloads.tasks import TaskStatus
    from engines.downloads.transfer import download_file
    from tests.engines.fake_hub import DEFAULT_COMMIT, FakeHub

    weights = os.urandom(200_000)
    files = {"model.safetensors": weights, "config.json": b'{"model_type": "bert"}', "tokenizer.json": b"{}"}
    with FakeHub() as hub:
        hub.add_repo("org/Embed-Small", files, lfs=["model.safetensors"])
        (isolated_dirs / "config.toml").write_text(f'hf_endpoint = "{hub.endpoint}"\n')
        app = make_app(
            screen="catalog", launch=False, listing=fixed_listing, transfer=download_file, describe_hub=hub_file
        )

        async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
            await pilot.press("slash", *"embed", "enter", "d")
            tasks = app.runtime.downloads.tasks
            await until(pilot, lambda: len(tasks.all()) == 3, "every file of the repo is queued")
            assert {t.revision for t in tasks.all()} == {DEFAULT_COMMIT}
            lfs = next(t for t in tasks.all() if t.file == "model.safetensors")
            assert lfs.sha256 == hashlib.sha256(weights).hexdigest() and lfs.total_bytes == len(weights)
            done = {TaskStatus.COMPLETED}
            await until(pilot, lambda: {t.status for t in tasks.all()} == done, "all downloaded", timeout=30)
            assert any("3 files of org/Embed-Small" in n.message for n in app._notifications)

        drive(app, test)
    folder = models_dir / "Embed-Small"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


def test_d_on_a_curated_row_downloads_what_the_hub_serves_not_the_catalogs_estimate(
    make_app: AppFactory, models_dir: Path, isolated_dirs: Path, tmp_path: Path
) -> None:
    """F2, /, filter, d: the catalog's size (1.17 GB) is an estimate; the Hub's size and LFS sha256 are what the
    file must match. The catalog shows the real size once the Hub said it, and the file lands verified."""
    import hashlib
    import threading

    from engines.downloads.hf_source import hub_file
    from engines.downloads.tasks import TaskStatus
    from engines.downloads.transfer import download_file
    from tests.engines.fake_hub import FakeHub
    from tests.engines.gguf_corpus import write_gguf

    write_gguf(tmp_path / "real.gguf", "llama", name="Tiny 1B Q8", context_length=8192, blocks=16)
    data = tmp_path.joinpath("real.gguf").read_bytes()
    gate = threading.Event()

    def transfer(*args: Any, **kwargs: Any) -> object:
        gate.wait(30)  # the real transfer, once the test has seen the catalog take the Hub's size
        return download_file(*args, **kwargs)

    def row(screen: CatalogScreen, model_id: str = "tiny-1b-q8_0") -> CatalogRow | None:
        return next((r for r in screen.query_one(ModelTable).rows if r.id == model_id), None)

    with FakeHub() as hub:
        hub.add_repo("org/tiny-GGUF", {"tiny-1b-q8_0.gguf": data})
        (isolated_dirs / "config.toml").write_text(f'hf_endpoint = "{hub.endpoint}"\n')
        app = make_app(screen="chat", launch=False, listing=fixed_listing, transfer=transfer, describe_hub=hub_file)

        async def main() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("f2")
                screen = app.screen
                assert isinstance(screen, CatalogScreen)
                await until(pilot, lambda: screen.listing is not None, "the listing is built")
                estimate = row(screen)
                assert estimate is not None and estimate.size_bytes == 1_170_000_000
                await pilot.press("slash", *"tiny-1b-q8", "enter", "d")
                shown_size = lambda: getattr(row(screen), "size_bytes", 0) == len(data)  # noqa: E731
                await until(pilot, shown_size, "the Hub's size shown", timeout=10)
                assert "1.2 GB" not in detail(screen)
                tasks = app.runtime.downloads.tasks
                (task,) = tasks.all()
                assert task.status is not TaskStatus.COMPLETED  # known before the file is here
                assert (task.total_bytes, task.sha256) == (len(data), hashlib.sha256(data).hexdigest())
                gate.set()
                ended = (TaskStatus.COMPLETED, TaskStatus.FAILED)
                await until(pilot, lambda: tasks.get(task.id).status in ended, "the download ended")
                assert tasks.get(task.id).status is TaskStatus.COMPLETED, tasks.get(task.id).error
                await until(pilot, lambda: getattr(row(screen), "source", "") == "local", "listed as local")
                assert any(n.message == "downloaded tiny-1b-q8_0.gguf" for n in app._notifications)

        run(main())
    assert (models_dir / "tiny-1b-q8_0.gguf").read_bytes() == data


def test_down_from_the_filter_lands_on_the_first_match_then_the_next(make_app: AppFactory, models_dir: Path) -> None:
    """/ q4_k_m, Down, Down, Enter acts on the second match (the first Down used to skip the first)."""

    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"q4_k_m")
        matches = shown(screen)
        assert len(matches) == 3
        table = screen.query_one(ModelTable)
        await pilot.press("down")
        assert screen.focused is table and table.current is not None and table.current.id == matches[0]
        await pilot.press("down")
        assert table.current is not None and table.current.id == matches[1]
        await pilot.press("up", "up")
        assert table.current is not None and table.current.id == matches[0]

    drive(catalog_app(make_app), test)


MANY = tuple(
    entry(f"m{n:03d}-q4_k_m", f"M {n:03d}", "fam", 0.1 + n, 0.05 * (n * 37 % 61 + 1), "Q4_K_M") for n in range(60)
)


def many_rows(config: Config, n_ctx: int | None) -> Listing:
    """Sixty curated rows: more than the table shows at 80x24."""
    return build_listing(config, n_ctx=n_ctx, resources=RESOURCES, catalog=MANY, discovery=Discovery([], []))


@pytest.mark.parametrize("key", ["s", "S"])
def test_a_new_sort_order_shows_its_head_from_the_top(make_app: AppFactory, key: str) -> None:
    """Sorting with the cursor far down showed the middle of the new order (the cursor followed its model)."""
    app = make_app(screen="catalog", launch=False, listing=many_rows)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            table = screen.query_one(ModelTable)
            await pilot.press("end")
            assert table.cursor == 59
            # The scroll follows the cursor after a refresh, later under load.
            await until(pilot, lambda: table.scroll_offset.y > 0, "the table scrolled to its end")
            await pilot.press(key)
            await until(pilot, lambda: table.scroll_offset.y == 0, "the table scrolled to its top")
            assert table.cursor == 0
            assert table.current is not None and table.current.id == table.rows[0].id

    run(main())


def drawn_question(modal: ConfirmModal) -> str:
    """The question as drawn, line by line joined with spaces; fails if the dialog cuts any of it off."""
    from textual.geometry import Region

    question = modal.query_one("#question")
    dialog = modal.query_one(".dialog")
    assert dialog.region.contains_region(question.region), "the question is cut off by the dialog"
    assert modal.region.contains_region(dialog.region), "the dialog is cut off by the screen"
    lines = [strip.text.strip() for strip in question.render_lines(Region(0, 0, *question.outer_size))]
    return " ".join(line for line in lines if line)


def test_enter_on_a_model_not_downloaded_offers_the_download_and_stays(make_app: AppFactory, models_dir: Path) -> None:
    """Enter on a curated row used to try a launch, fail, and jump to the chat with an error."""
    app = make_app(screen="catalog", launch=False, listing=fixed_listing)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            await pilot.press("slash", *"qwen-7b", "enter", "enter")
            modal = app.screen
            assert isinstance(modal, ConfirmModal)
            assert drawn_question(modal) == "qwen-7b-q4_k_m is not downloaded. Download it now (about 4.7 GB)?"
            await pilot.press("n")
            assert app.screen is screen and not app.runtime.downloads.tasks.all()
            await pilot.press("enter", "y")
            await until(pilot, lambda: len(app.runtime.downloads.tasks.all()) == 1, "queued")
            assert app.screen is screen and app.current_mode == "catalog" and app.runtime.active is None
            (task,) = app.runtime.downloads.tasks.all()
            assert task.file == "qwen-7b-q4_k_m.gguf"

    run(main())


def test_the_delete_question_shows_whole_at_80x24(make_app: AppFactory, models_dir: Path) -> None:
    app = make_app(screen="catalog", launch=False, listing=fixed_listing)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            await pilot.press("slash", *"finetune", "enter", "x")
            modal = app.screen
            assert isinstance(modal, ConfirmModal)
            question = drawn_question(modal)
            assert question.startswith("Delete my-finetune.gguf (") and question.endswith("This cannot be undone.")
            assert len(str(models_dir)) > 56 and "…" in question  # a long folder is shortened on purpose

    run(main())


@pytest.mark.parametrize(
    ("path", "width", "expected"),
    [
        ("/models/a.gguf", 56, "/models/a.gguf"),
        ("/home/me/.local/share/llm-tui/models/qwen2.5-7b-q4_k_m.gguf", 40, "/home/me/…/models/qwen2.5-7b-q4_k_m.gguf"),
        ("/x/" + "n" * 60 + ".gguf", 20, "…" + ("n" * 60 + ".gguf")[-19:]),
        ("/a/bb/ccc/dddd/eeeee/f.gguf", 20, "/a/bb/…/eeeee/f.gguf"),
    ],
)
def test_short_path_keeps_the_file_name_and_elides_the_folder(path: str, width: int, expected: str) -> None:
    from tui.screens.modals.confirm import short_path

    assert short_path(path, width) == expected and len(short_path(path, width)) <= width


def test_status_keeps_the_install_extra_and_the_footer_offers_o(make_app: AppFactory, models_dir: Path) -> None:
    """`pip install 'llm-tui[ollama]'` lost `[ollama]` to markup; `o` (pull with Ollama) was hidden."""
    from dataclasses import replace

    hint = "Ollama client not installed: pip install 'llm-tui[ollama]'"

    def listing(config: Config, n_ctx: int | None) -> Listing:
        return replace(fixed_listing(config, n_ctx), statuses=[hint])

    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        assert hint in status(screen)
        footer = {b.binding.key: b.binding for b in screen.active_bindings.values()}
        assert footer["o"].show and footer["o"].description
        await pilot.press("slash", *"ollama", "enter", "x")  # the hint names the command, not in backticks
        message = list(app._notifications)[-1].message
        assert "[b]ollama rm[/b]" in message and "`" not in message

    drive(make_app(screen="catalog", launch=False, listing=listing), test)


def test_a_base_model_says_so_and_d_offers_its_chat_build(make_app: AppFactory, models_dir: Path) -> None:
    """The offline default is Gemma 3 270M base: the catalog marks it, says what it is for, and `d` on it
    fetches the instruct build to chat with."""
    from engines.catalog.builtin import builtin_catalog
    from engines.catalog.discover import discover
    from engines.catalog.local_model import finish_models
    from tests.engines.gguf_corpus import write_gguf

    gemma = tuple(e for e in builtin_catalog() if e.family == "gemma-3" and e.id.startswith("gemma-3-270m"))
    write_gguf(models_dir / "gemma-3-270m-q4_k_m.gguf", "gemma3", name="Gemma 3 270M", context_length=32768)

    def listing(config: Config, n_ctx: int | None) -> Listing:
        found = discover(config, include_network=False, hf_cache_dir=config.cache_dir / "no-hf-cache")
        discovery = Discovery(finish_models(found.models, gemma), [])
        return build_listing(config, n_ctx=n_ctx, resources=RESOURCES, catalog=gemma, discovery=discovery)

    async def test(app: LlmTuiApp, screen: CatalogScreen, pilot: Pilot[int]) -> None:
        await pilot.press("slash", *"gemma-3-270m", "enter")
        table = screen.query_one(ModelTable)
        base = next(i for i, r in enumerate(table.rows) if r.id == "gemma-3-270m")
        table.cursor = base
        await pilot.pause()
        assert table.rows[base].source == "local"
        assert "gemma-3-270m (base)" in table.render_line(base + 1).text
        hint = "base model: continues text; for chat use gemma-3-270m-it-q4_k_m (d to download)"
        assert hint in detail(screen), detail(screen)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmModal) and "gemma-3-270m-it-q4_k_m (253 MB)" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: len(app.runtime.downloads.tasks.all()) == 1, "the chat build is queued")
        (task,) = app.runtime.downloads.tasks.all()
        assert (task.repo, task.file) == ("bartowski/google_gemma-3-270m-it-GGUF", "google_gemma-3-270m-it-Q4_K_M.gguf")

    drive(make_app(screen="catalog", launch=False, listing=listing), test)


def test_a_local_path_in_the_detail_pane_is_shortened_not_broken_at_80x24(
    make_app: AppFactory, models_dir: Path
) -> None:
    from textual.geometry import Region

    app = make_app(screen="catalog", launch=False, listing=fixed_listing)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            await pilot.press("slash", *"finetune", "enter")
            await pilot.pause()
            about = screen.query_one("#detail-about")
            lines = [strip.text.rstrip() for strip in about.render_lines(Region(0, 0, *about.outer_size))]
            (line,) = [line for line in lines if line.strip().startswith("file ")]
            assert line.endswith("/my-finetune.gguf") and "…" in line  # the folder elided, the name whole

    run(main())


def test_the_cursor_row_stays_in_view_when_the_table_shrinks(make_app: AppFactory) -> None:
    """At the last row, a shorter terminal (or the detail pane filling in) must not hide the cursor's row."""
    app = make_app(screen="catalog", launch=False, listing=many_rows)

    def in_view(table: ModelTable) -> bool:
        top = int(table.scroll_offset.y)
        return top <= table.cursor < top + table.scrollable_content_region.height - 1  # less the header line

    async def main() -> None:
        async with app.run_test(size=(80, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            await until(pilot, lambda: screen.listing is not None, "the listing is built")
            table = screen.query_one(ModelTable)
            await pilot.press("end")
            await until(pilot, lambda: in_view(table), "the last row in view")
            await pilot.resize_terminal(80, 20)
            await until(pilot, lambda: table.size.height < 12, "the table to shrink")
            await until(pilot, lambda: in_view(table), "the last row still in view")
            assert table.cursor == 59

    run(main())
