"""One convention for a table in the store: the Store hands its transactions to the class that keeps the table
(`Store.compares`, `Store.downloads`); nothing outside engines/store reaches a Store's private methods."""

from __future__ import annotations

import ast
from pathlib import Path

from engines.downloads.tasks import DownloadTasks, TaskStatus
from engines.store.sessions import Store

ROOT = Path(__file__).parents[3]
PRIVATE = {"_read", "_write", "_connection", "_lock"}


def reaches_into_a_store(node: ast.AST) -> bool:
    """`store._write`, `self.store._read`, `runtime.store._connection`: a private name taken off a store."""
    if not isinstance(node, ast.Attribute) or node.attr not in PRIVATE:
        return False
    owner = node.value
    name = owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""
    return name.lower().endswith("store")


def test_no_module_outside_the_store_uses_its_private_methods() -> None:
    found = []
    for package in ("engines", "tui", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "engines" / "store"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            found += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree) if reaches_into_a_store(n)]
    assert found == []


def test_the_download_table_works_on_the_stores_connection(tmp_path: Path) -> None:
    store = Store(tmp_path / "chat.db")
    try:
        tasks = store.downloads
        assert isinstance(tasks, DownloadTasks)
        task = tasks.add("url", tmp_path / "a.gguf", url="http://127.0.0.1:9/a.gguf")
        assert store.downloads.get(task.id).status is TaskStatus.PENDING  # a second view sees the same rows
    finally:
        store.close()
