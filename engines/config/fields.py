"""The fields of the settings screen: where each lives in config.toml, how typed text becomes a file value,
and what loading the file would say about it.

A field is checked by putting its value alone in a document and validating
that as `load_config` validates a file, so the screen refuses exactly what
loading would refuse, with the same words.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engines.config.load import Config, check_document
from engines.config.values import as_float, as_int, resolve_path
from engines.errors import ConfigError

Kind = Literal["path", "secret", "url", "text", "float", "int", "threads", "bool", "rate", "theme", "stops"]

NOW = ""
NEW_CHATS = "applies to new chats"
NEXT_LAUNCH = "applies to the next launch"
NEXT_DOWNLOAD = "applies to downloads that start from now on"


@dataclass(frozen=True, slots=True)
class SettingField:
    """One editable setting: its place in the file, its label and group on screen, and when it takes effect."""

    key: tuple[str, ...]
    label: str
    group: str
    kind: Kind
    hint: str = ""
    """What it takes, shown as the placeholder when the file does not set it."""
    applies: str = NOW
    """When a saved change takes effect in the running app ("" = at once)."""

    @property
    def id(self) -> str:
        """A widget id for the field."""
        return "-".join(self.key).replace(".", "_")

    @property
    def name(self) -> str:
        """The key as the file and error messages write it: theme, defaults.temperature."""
        return ".".join(self.key)


PATHS, REMOTE, ALIASES, DEFAULTS = "Paths & hub", "Ollama & remote", "Aliases", "Defaults"
DOWNLOADS, DISPLAY = "Downloads", "Display"
GROUPS = (PATHS, REMOTE, ALIASES, DEFAULTS, DOWNLOADS, DISPLAY)
"""In screen order; remote endpoints follow the Ollama host, aliases have a group of their own."""

FIELDS: tuple[SettingField, ...] = (
    SettingField(("models_dir",), "Models folder", PATHS, "path", applies="applies on the next catalog scan"),
    SettingField(("hf_token",), "HF token", PATHS, "secret", applies=NEXT_DOWNLOAD),
    SettingField(("hf_endpoint",), "HF endpoint", PATHS, "url", "https://huggingface.co", NEXT_DOWNLOAD),
    SettingField(
        ("ollama_host",), "Ollama host", REMOTE, "text", "http://127.0.0.1:11434", "applies on the next catalog scan"
    ),
    SettingField(("defaults", "temperature"), "Temperature", DEFAULTS, "float", "0 to 5; 0 is greedy", NEW_CHATS),
    SettingField(("defaults", "top_p"), "Top p", DEFAULTS, "float", "above 0, at most 1", NEW_CHATS),
    SettingField(("defaults", "top_k"), "Top k", DEFAULTS, "int", "0 = off", NEW_CHATS),
    SettingField(("defaults", "repetition_penalty"), "Repeat penalty", DEFAULTS, "float", "1 = off", NEW_CHATS),
    SettingField(("defaults", "max_tokens"), "Max tokens", DEFAULTS, "int", "until done", NEW_CHATS),
    SettingField(
        ("defaults", "stop"), "Stop sequences", DEFAULTS, "stops", r"comma-separated; \n = newline", NEW_CHATS
    ),
    SettingField(("defaults", "seed"), "Seed", DEFAULTS, "int", "random", NEW_CHATS),
    SettingField(("n_ctx",), "Context size", DEFAULTS, "int", applies=NEXT_LAUNCH),
    SettingField(("n_gpu_layers",), "GPU layers", DEFAULTS, "int", applies=NEXT_LAUNCH),
    SettingField(("n_threads",), "Threads", DEFAULTS, "threads", "auto", NEXT_LAUNCH),
    SettingField(("parallel",), "Parallel slots", DEFAULTS, "int", "requests decoded at once", NEXT_LAUNCH),
    SettingField(("gpu_memory_fraction",), "GPU memory share", DEFAULTS, "float", applies=NEXT_LAUNCH),
    SettingField(("download_concurrency",), "Parallel downloads", DOWNLOADS, "int"),
    SettingField(("download_bandwidth_cap",), "Bandwidth cap", DOWNLOADS, "rate", "no cap; e.g. 5MB/s", NEXT_DOWNLOAD),
    SettingField(
        ("downloads_resume_on_start",), "Resume on start", DOWNLOADS, "bool", applies="applies at the next start"
    ),
    SettingField(("theme",), "Theme", DISPLAY, "theme"),
    SettingField(("telemetry_interval_s",), "Telemetry every", DISPLAY, "float"),
)
BY_NAME: Mapping[str, SettingField] = {f.name: f for f in FIELDS}


def to_raw(field: SettingField, text: str) -> object | None:
    """The file value for what was typed: a number where one was meant (so the file holds 0.5, not "0.5"); None
    for an empty field, which removes the key. Text that is not a number stays text, for the check to refuse."""
    text = text.strip()
    if not text:
        return None
    if field.kind == "float":  # a whole number stays whole: `telemetry_interval_s = 2`, as a person writes it
        number = as_int(text)
        return number if number is not None else as_float(text) if as_float(text) is not None else text
    if field.kind in ("int", "threads", "rate"):
        whole = as_int(text)
        return whole if whole is not None else text
    if field.kind == "bool":
        return text.lower() in ("yes", "true", "on", "1")
    return text


def file_text(field: SettingField, raw: object) -> str:
    """How a value from the file shows in its field ("" when the file does not set it)."""
    if raw is None:
        return ""
    if field.kind == "bool":
        return "yes" if raw is True else "no" if raw is False else str(raw)
    if field.kind == "stops":
        return stops_text([raw] if isinstance(raw, str) else raw if isinstance(raw, list) else [])
    return str(raw)


def stops_text(stops: list[str] | tuple[str, ...]) -> str:
    r"""Stop sequences as the chat settings dialog types them: comma-separated, with \n, \t, \, and \\."""
    out = []
    for stop in stops:
        out.append(str(stop).replace("\\", "\\\\").replace(",", "\\,").replace("\n", "\\n").replace("\t", "\\t"))
    return ",".join(out)


def file_value(document: Mapping[str, Any], field: SettingField) -> object | None:
    """The field's value in a parsed config file, or None."""
    value: object = document
    for part in field.key:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def problem(field: SettingField, raw: object, path: Path) -> str | None:
    """What loading the file at `path` would say about this value (without the file's name), or None."""
    if raw is None:
        return None
    document: dict[str, Any] = {field.key[-1]: raw}
    for part in reversed(field.key[:-1]):
        document = {part: document}
    return check_text(document, path)


def check_text(document: Mapping[str, Any], path: Path) -> str | None:
    """check_document's complaint about `document` without the leading "PATH: ", or None when it is valid."""
    try:
        check_document(document, path)
    except ConfigError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


@dataclass(frozen=True, slots=True)
class FolderCheck:
    """What a models folder path is: its absolute form, why it cannot be used, or that it must be created."""

    path: Path
    problem: str | None = None
    missing: bool = False
    read_only: bool = False


def check_folder(text: str, base: Path) -> FolderCheck:
    """Whether `text` (relative to the config file's folder `base`) names a folder we can use or create."""
    path = resolve_path(text.strip(), base)
    if path.is_dir():
        return FolderCheck(path, read_only=not os.access(path, os.W_OK | os.X_OK))
    if path.exists():
        return FolderCheck(path, f"{show_path(path)} is a file, not a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return FolderCheck(path, f"cannot create {show_path(path)}: {show_path(parent)} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        return FolderCheck(path, f"cannot create {show_path(path)}: {show_path(parent)} is not writable")
    return FolderCheck(path, missing=True)


def show_path(path: Path) -> str:
    """A path with the home folder written as ~."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home)) if path != home else "~"
    except ValueError:
        return str(path)


def origin_note(field: SettingField, config: Config) -> str | None:
    """Why the running app does not use the file's value for this field, when it does not."""
    origin = config.origins.get(field.key[0], "")
    kind, _, where = origin.partition(" ")
    if kind not in ("env", "flag") or len(field.key) > 1:
        return None
    what = "" if field.kind == "secret" else f" (= {effective_text(field, config)})"
    return f"set by {where}{what} for this run; the file's value applies without it"


def base_text(field: SettingField, config: Config) -> str | None:
    """`/srv/models (from ./config.toml)` when the read-only defaults file under the user's (a checkout's
    config.toml) gives this field its value, else None: an empty field then shows what applies without it."""
    base = config.base_source
    if base is None or len(field.key) > 1 or field.kind == "secret":
        return None
    if config.origins.get(field.key[0], "") != f"file {base}":
        return None
    return f"{effective_text(field, config)} (from {show_path(base)})"


def effective_text(field: SettingField, config: Config) -> str:
    """The value the running app uses for a top-level field, as text (not for secrets)."""
    value: Any = config.defaults if field.key[0] == "defaults" else config
    value = getattr(value, field.key[-1], None)
    if isinstance(value, Path):
        return show_path(value)
    if field.kind == "bool":
        return "yes" if value else "no"
    if field.kind == "threads" and value is None:
        return "auto"
    return "" if value is None or value == () else str(value)


def read_document(path: Path) -> dict[str, Any]:
    """The config file parsed as plain values ({} when it does not exist); ConfigError when it cannot be read."""
    import tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
