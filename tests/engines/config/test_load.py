"""Configuration layering, validation, secrets and atomic saving."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest
import tomli_w

from engines.config import load as config_mod
from engines.config.load import (
    Config,
    RemoteEndpoint,
    Secret,
    config_to_toml_dict,
    default_config,
    load_config,
    save_config,
    user_config_path,
)
from engines.config.values import normalize_ollama_host
from engines.errors import ConfigError
from engines.types import Params

TOKEN = "hf_ZZtopSECRETtoken1234567890"
REPO_CONFIG = Path(__file__).resolve().parents[3] / "config.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and discovery ---


def test_defaults_without_file_use_xdg_dirs(isolated_dirs: Path) -> None:
    config = load_config(env={})
    assert config.source is None
    assert config.data_dir == isolated_dirs / "xdg_data_home" / "llm-tui"
    assert config.cache_dir == isolated_dirs / "xdg_cache_home" / "llm-tui"
    assert config.models_dir == config.data_dir / "models"
    assert config.db_path == config.data_dir / "llm-tui.db"
    assert user_config_path() == isolated_dirs / "xdg_config_home" / "llm-tui" / "config.toml"
    assert config == default_config()
    assert (config.n_ctx, config.n_threads, config.n_gpu_layers) == (4096, None, 0)
    assert config.ollama_host == "http://127.0.0.1:11434"
    assert config.hf_token is None and config.aliases == {} and config.remote_endpoints == ()
    assert config.defaults == Params()
    assert config.warnings == ()
    assert set(config.origins.values()) == {"default"}


def test_discovery_order(isolated_dirs: Path) -> None:
    local = write(isolated_dirs / "config.toml", "n_ctx = 200\nn_gpu_layers = 3\n")
    config = load_config(env={})
    assert (config.n_ctx, config.source, config.base_source) == (200, None, local)
    user = write(user_config_path(), "n_ctx = 100\n")
    config = load_config(env={})
    assert (config.n_ctx, config.n_gpu_layers) == (100, 3)  # the user's file over ./config.toml's defaults
    assert (config.source, config.base_source) == (user, local)
    assert config.origins["n_ctx"] == f"file {user}" and config.origins["n_gpu_layers"] == f"file {local}"
    named = write(isolated_dirs / "env" / "c.toml", "n_ctx = 300\n")
    assert load_config(env={"LLM_TUI_CONFIG": str(named)}).n_ctx == 300
    given = write(isolated_dirs / "flag" / "c.toml", "n_ctx = 400\n")
    config = load_config(given, env={"LLM_TUI_CONFIG": str(named)})
    assert (config.n_ctx, config.source, config.base_source) == (400, given, None)
    assert config.n_gpu_layers == 0  # a named file stands alone: ./config.toml is not read under it


def test_the_users_file_merges_tables_over_the_local_defaults(isolated_dirs: Path) -> None:
    write(
        isolated_dirs / "config.toml",
        'models_dir = "models"\n[aliases]\ntiny = "a"\nsmall = "b"\n[defaults]\ntemperature = 0.5\ntop_k = 40\n',
    )
    write(user_config_path(), '[aliases]\ntiny = "c"\n[defaults]\ntop_k = 7\n')
    config = load_config(env={})
    assert config.models_dir == isolated_dirs / "models"  # resolved against ./config.toml's folder
    assert dict(config.aliases) == {"tiny": "c", "small": "b"}
    assert (config.defaults.temperature, config.defaults.top_k) == (0.5, 7)
    reloaded = config_mod.load_config(config.source, env={}, base=config.base_source)
    assert reloaded == config and reloaded.base_source == config.base_source


def test_config_paths_relative_to_cwd_and_home(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(isolated_dirs / "sub" / "c.toml", "n_ctx = 32\n")
    assert load_config("sub/c.toml", env={}).n_ctx == 32
    assert load_config(env={"LLM_TUI_CONFIG": "sub/c.toml"}).n_ctx == 32
    monkeypatch.setenv("HOME", str(isolated_dirs))
    assert load_config("~/sub/c.toml", env={}).n_ctx == 32


def test_missing_config_files_are_errors(isolated_dirs: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config: config file not found: .*nope\.toml"):
        load_config("nope.toml", env={})
    with pytest.raises(ConfigError, match=r"LLM_TUI_CONFIG: config file not found: .*gone\.toml"):
        load_config(env={"LLM_TUI_CONFIG": "gone.toml"})
    (isolated_dirs / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("dir.toml", env={})


def test_empty_env_values_count_as_unset(isolated_dirs: Path) -> None:
    config = load_config(env={"LLM_TUI_CONFIG": "", "HF_TOKEN": "  ", "LLM_TUI_N_CTX": ""})
    assert config == default_config()


# --- precedence ---


def test_each_layer_beats_the_one_below(isolated_dirs: Path) -> None:
    write(isolated_dirs / "config.toml", 'n_ctx = 1000\ntheme = "nord"\nn_gpu_layers = 5\nollama_host = "filehost"\n')
    env = {"LLM_TUI_N_CTX": "2000", "LLM_TUI_THEME": "gruvbox", "OLLAMA_HOST": "envhost:1"}
    flags: dict[str, object] = {"n_ctx": 3000, "theme": None, "n_gpu_layers": None}
    config = load_config(env=env, overrides=flags)
    assert config.n_ctx == 3000  # flag > env > file
    assert config.theme == "gruvbox"  # env > file (flag None = not given)
    assert config.n_gpu_layers == 5  # file > default
    assert config.ollama_host == "http://envhost:1"
    assert config.gpu_memory_fraction == 0.9  # default
    assert config.origins["n_ctx"] == "flag --n-ctx"
    assert config.origins["theme"] == "env LLM_TUI_THEME"
    assert config.origins["n_gpu_layers"] == f"file {isolated_dirs / 'config.toml'}"
    assert config.origins["gpu_memory_fraction"] == "default"


def test_llm_tui_env_names_win_over_generic_ones(isolated_dirs: Path) -> None:
    env = {
        "OLLAMA_HOST": "a:1",
        "LLM_TUI_OLLAMA_HOST": "b:2",
        "HF_TOKEN": "generic",
        "LLM_TUI_HF_TOKEN": "specific",
        "HF_ENDPOINT": "https://a.example",
        "LLM_TUI_HF_ENDPOINT": "https://b.example/",
    }
    config = load_config(env=env)
    assert config.ollama_host == "http://b:2"
    assert config.hf_token == Secret("specific")
    assert config.hf_endpoint == "https://b.example"
    generic = load_config(env={"HF_TOKEN": "generic", "HF_ENDPOINT": "https://a.example"})
    assert generic.hf_token is not None and generic.hf_token.reveal() == "generic"
    assert generic.hf_endpoint == "https://a.example"


def test_every_env_var_is_read(isolated_dirs: Path) -> None:
    env = {
        "LLM_TUI_MODELS_DIR": "m",
        "LLM_TUI_DATA_DIR": "d",
        "LLM_TUI_CACHE_DIR": "c",
        "LLM_TUI_N_CTX": "8192",
        "LLM_TUI_N_THREADS": "3",
        "LLM_TUI_N_GPU_LAYERS": "-1",
        "LLM_TUI_GPU_MEMORY_FRACTION": "0.5",
        "LLM_TUI_TELEMETRY_INTERVAL_S": "0.25",
        "LLM_TUI_THEME": "nord",
    }
    config = load_config(env=env)
    assert (config.models_dir, config.data_dir, config.cache_dir) == tuple(isolated_dirs / n for n in "mdc")
    assert (config.n_ctx, config.n_threads, config.n_gpu_layers) == (8192, 3, -1)
    assert (config.gpu_memory_fraction, config.telemetry_interval_s, config.theme) == (0.5, 0.25, "nord")
    assert set(config_mod.ENV_VARS) >= {*env, "LLM_TUI_CONFIG", "HF_TOKEN", "HF_ENDPOINT", "OLLAMA_HOST"}


def test_flags_override_paths_and_auto_threads(isolated_dirs: Path) -> None:
    write(isolated_dirs / "config.toml", "n_threads = 4\n")
    config = load_config(env={}, overrides={"models_dir": Path("x"), "data_dir": "/abs/data", "n_threads": "auto"})
    assert config.models_dir == isolated_dirs / "x"
    assert config.data_dir == Path("/abs/data")
    assert config.n_threads is None
    with pytest.raises(ValueError, match="aliases"):
        load_config(env={}, overrides={"aliases": {"a": "b"}})


def test_models_dir_defaults_under_the_effective_data_dir(isolated_dirs: Path) -> None:
    config = load_config(env={"LLM_TUI_DATA_DIR": "/srv/llm"})
    assert config.models_dir == Path("/srv/llm/models")


# --- paths ---


def test_relative_paths_in_file_resolve_against_its_folder(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(isolated_dirs / "home"))
    path = write(
        isolated_dirs / "etc" / "c.toml",
        'models_dir = "models"\ndata_dir = "../data"\ncache_dir = "~/cache"\n',
    )
    config = load_config(path, env={})
    assert config.models_dir == isolated_dirs / "etc" / "models"
    assert config.data_dir == isolated_dirs / "data"
    assert config.cache_dir == isolated_dirs / "home" / "cache"
    from_env = load_config(path, env={"LLM_TUI_MODELS_DIR": "here"})
    assert from_env.models_dir == isolated_dirs / "here"


# --- validation ---


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('n_ctx = "big"', 'n_ctx must be an integer of at least 16, got "big"'),
        ("n_ctx = 8", "n_ctx must be an integer of at least 16, got 8"),
        ("n_ctx = true", "n_ctx must be an integer of at least 16, got true"),
        ("n_threads = 0", 'n_threads must be a positive integer or "auto", got 0'),
        ("n_gpu_layers = -2", "n_gpu_layers must be an integer of at least -1"),
        ("gpu_memory_fraction = 0", "gpu_memory_fraction must be a number above 0 and at most 1, got 0"),
        ("gpu_memory_fraction = 1.5", "gpu_memory_fraction must be a number above 0 and at most 1"),
        ("telemetry_interval_s = -1.0", "telemetry_interval_s must be a positive number of seconds"),
        ("telemetry_interval_s = inf", "telemetry_interval_s must be a positive number"),
        ('hf_endpoint = "ftp://x"', 'hf_endpoint must be an http:// or https:// URL, got "ftp://x"'),
        ('ollama_host = "ftp://x"', "ollama_host must be an Ollama address"),
        ('ollama_host = "host:port"', "ollama_host must be an Ollama address"),
        ('theme = ""', "theme must be a non-empty string"),
        ("models_dir = 5", "models_dir must be a folder path"),
        ('aliases = "x"', "aliases must be a table"),
        ("[aliases]\nx = 1", "aliases.x must be a non-empty string, got 1"),
        ("[defaults]\ntemperature = 9.0", "defaults: temperature must be between 0 and 5"),
        ("[defaults]\ntop_k = 1.5", "defaults.top_k must be an integer, got 1.5"),
        ("[defaults]\nstop = [1]", "defaults.stop must be a list of strings"),
        ("[defaults]\nstop = ['']", "defaults: stop sequences must not be empty"),
        ("[[remote_endpoints]]\nname = 'a'", r"remote_endpoints\[0\]: url is required"),
        ("[[remote_endpoints]]\nname = 'a'\nurl = 'localhost'", r"remote_endpoints\[0\].url must be an http"),
        (
            "[[remote_endpoints]]\nname = 'a'\nurl = 'http://a'\n[[remote_endpoints]]\nname = 'a'\nurl = 'http://b'",
            r"remote_endpoints\[1\].name: 'a' is used by another endpoint",
        ),
        ("[[remote_endpoints]]\nname='a'\nurl='http://a'\napi_key_env='1X'", r"api_key_env must be an environment"),
        ("remote_endpoints = 3", "remote_endpoints must be an array of tables"),
    ],
)
def test_bad_file_values_name_file_and_key(isolated_dirs: Path, line: str, message: str) -> None:
    path = write(isolated_dirs / "config.toml", line + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env={})
    assert str(info.value).startswith(f"{path}: ")


def test_bad_env_and_flag_values_name_their_source(isolated_dirs: Path) -> None:
    with pytest.raises(ConfigError, match=r"^LLM_TUI_N_CTX: must be an integer of at least 16, got 'x'$"):
        load_config(env={"LLM_TUI_N_CTX": "x"})
    with pytest.raises(ConfigError, match=r"^OLLAMA_HOST: must be an Ollama address"):
        load_config(env={"OLLAMA_HOST": "gopher://h"})
    with pytest.raises(ConfigError, match=r"^LLM_TUI_GPU_MEMORY_FRACTION: .*got 'nan'"):
        load_config(env={"LLM_TUI_GPU_MEMORY_FRACTION": "nan"})
    with pytest.raises(ConfigError, match=r"^--n-ctx: must be an integer of at least 16, got 4$"):
        load_config(env={}, overrides={"n_ctx": 4})
    with pytest.raises(ConfigError, match=r"^--threads: must be a positive integer"):
        load_config(env={}, overrides={"n_threads": -3})


def test_toml_syntax_error_names_file_and_line(isolated_dirs: Path) -> None:
    path = write(isolated_dirs / "config.toml", "n_ctx = 4096\ntheme = \n")
    with pytest.raises(ConfigError, match="line 2") as info:
        load_config(env={})
    assert str(path) in str(info.value) and "invalid TOML" in str(info.value)


def test_non_utf8_file_is_an_error(isolated_dirs: Path) -> None:
    (isolated_dirs / "config.toml").write_bytes(b'theme = "\xff"\n')
    with pytest.raises(ConfigError, match=r"config\.toml"):
        load_config(env={})


def test_unknown_keys_warn_and_are_ignored(isolated_dirs: Path) -> None:
    write(
        isolated_dirs / "config.toml",
        "n_ctxx = 1\n[defaults]\ntemp = 1\n[[remote_endpoints]]\nname = 'a'\nurl = 'http://a'\nkey = 'k'\n",
    )
    config = load_config(env={})
    assert len(config.warnings) == 3
    assert "unknown key 'n_ctxx'" in config.warnings[0]
    assert "defaults: unknown key 'temp'" in config.warnings[1]
    assert "remote_endpoints[0]: unknown key 'key'" in config.warnings[2]
    assert config.n_ctx == 4096


def test_full_file_schema(isolated_dirs: Path) -> None:
    write(
        isolated_dirs / "config.toml",
        """
[aliases]
tiny = "gemma-3-270m"
[defaults]
temperature = 1
top_p = 0.9
top_k = 40
repetition_penalty = 1.1
max_tokens = 256
stop = "</s>"
seed = 7
[[remote_endpoints]]
name = "vllm"
url = "http://gpu:8000/v1/"
api_key_env = "VLLM_KEY"
[[remote_endpoints]]
name = "other"
url = "https://other.example/v1"
api_key = "sk-inline"
""",
    )
    config = load_config(env={})
    assert config.aliases == {"tiny": "gemma-3-270m"}
    assert config.defaults == Params(1.0, 0.9, 40, 1.1, 256, ("</s>",), 7)
    vllm, other = config.remote_endpoints
    assert vllm == RemoteEndpoint("vllm", "http://gpu:8000/v1", api_key_env="VLLM_KEY")
    assert vllm.resolve_api_key({"VLLM_KEY": "k1"}) == Secret("k1")
    assert vllm.resolve_api_key({}) is None
    assert other.resolve_api_key({}) == Secret("sk-inline")
    with pytest.raises(TypeError):
        config.aliases["x"] = "y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_ctx = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("example.com", "http://example.com:11434"),
        ("example.com:56789", "http://example.com:56789"),
        (":56789", "http://127.0.0.1:56789"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("HTTPS://Example.COM:56789/path/", "https://example.com:56789/path"),
        ("example.com/path", "http://example.com:11434/path"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("[::]", "http://[::1]:11434"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
        (" localhost ", "http://localhost:11434"),
    ],
)
def test_ollama_host_normalisation(given: str, url: str) -> None:
    assert normalize_ollama_host(given) == url


@pytest.mark.parametrize("given", ["", "ftp://x", "host:99999", "host:abc", "a b"])
def test_ollama_host_rejects(given: str) -> None:
    with pytest.raises(ValueError):
        normalize_ollama_host(given)


# --- secrets ---


def test_secrets_never_show_in_repr_str_or_errors(isolated_dirs: Path) -> None:
    write(
        isolated_dirs / "config.toml",
        f'hf_token = "{TOKEN}"\n[[remote_endpoints]]\nname = "a"\nurl = "http://a"\napi_key = "{TOKEN}-2"\n',
    )
    config = load_config(env={"SOME_KEY": f"{TOKEN}-3"})
    assert config.hf_token is not None and config.hf_token.reveal() == TOKEN
    assert config.env == {"SOME_KEY": f"{TOKEN}-3"}  # kept for the variables settings name, never shown
    for text in (repr(config), str(config), f"{config}", repr(config.remote_endpoints), str(config.redacted())):
        assert "ZZtop" not in text
    assert repr(Secret(TOKEN)) == str(Secret(TOKEN)) == "Secret('********')"
    redacted = config.redacted()
    assert "ZZtop" not in json.dumps(redacted)
    assert redacted["hf_token"] == "********"
    assert redacted["remote_endpoints"] == [
        {"name": "a", "url": "http://a", "api_key_env": None, "api_key": "********"}
    ]
    assert redacted["models_dir"] == str(config.models_dir) and redacted["db_path"] == str(config.db_path)
    assert pickle.loads(pickle.dumps(config.hf_token)) == config.hf_token
    with pytest.raises(AttributeError):
        config.hf_token._value = "x"


def test_bad_secret_and_url_with_password_are_not_echoed(isolated_dirs: Path) -> None:
    write(isolated_dirs / "config.toml", "hf_token = 12345678\n")
    with pytest.raises(ConfigError, match=r"hf_token must be a non-empty string$"):
        load_config(env={})
    url = f"https://user:{TOKEN}@host/v1"
    write(isolated_dirs / "config.toml", f'[[remote_endpoints]]\nname = "a"\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert "user:password" in str(info.value) and TOKEN not in str(info.value)


# --- saving ---


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_save_uses_0600_only_when_a_secret_is_present(isolated_dirs: Path, umask_022: object) -> None:
    plain = isolated_dirs / "out" / "plain.toml"
    save_config({"n_ctx": 8192, "aliases": {"a": "b"}}, plain)
    assert _mode(plain) == 0o644
    secret = isolated_dirs / "out" / "secret.toml"
    save_config({"hf_token": Secret(TOKEN)}, secret)
    assert _mode(secret) == 0o600
    assert TOKEN in secret.read_text()
    endpoint = isolated_dirs / "out" / "endpoint.toml"
    save_config({"remote_endpoints": [{"name": "a", "url": "http://a", "api_key": "k"}]}, endpoint)
    assert _mode(endpoint) == 0o600
    save_config({"n_ctx": 100}, secret)  # the secret is gone; a stricter existing mode is kept
    assert _mode(secret) == 0o600
    save_config({"hf_token": "plain-str-token"}, plain)
    assert _mode(plain) == 0o600
    assert sorted(p.name for p in (isolated_dirs / "out").iterdir()) == ["endpoint.toml", "plain.toml", "secret.toml"]


def test_private_file_is_created_0600(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modes: list[int] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: object) -> int:
        if flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    save_config({"hf_token": TOKEN}, isolated_dirs / "c.toml")
    assert modes == [0o600]


@pytest.mark.parametrize("failing", ["dumps", "replace"])
def test_failed_save_leaves_the_old_file(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = isolated_dirs / "c.toml"
    save_config({"n_ctx": 1024}, path)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tomli_w if failing == "dumps" else os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        save_config({"n_ctx": 2048}, path)
    monkeypatch.undo()
    assert path.read_text() == "n_ctx = 1024\n"
    assert [p.name for p in isolated_dirs.iterdir() if p.is_file()] == ["c.toml"]


def test_save_refuses_invalid_values(isolated_dirs: Path) -> None:
    path = isolated_dirs / "c.toml"
    with pytest.raises(ConfigError, match="n_ctx must be"):
        save_config({"n_ctx": 1}, path)
    assert not path.exists()


def test_save_follows_a_symlink(isolated_dirs: Path) -> None:
    real = write(isolated_dirs / "dotfiles" / "config.toml", "n_ctx = 64\n")
    link = isolated_dirs / "link.toml"
    link.symlink_to(real)
    save_config({"n_ctx": 128}, link)
    assert link.is_symlink() and load_config(link, env={}).n_ctx == 128


def test_round_trip_gives_an_equal_config(isolated_dirs: Path) -> None:
    write(
        isolated_dirs / "config.toml",
        f"""
models_dir = "m"
cache_dir = "/tmp/llm-cache"
hf_token = "{TOKEN}"
hf_endpoint = "https://hf-mirror.com"
ollama_host = "gpu:11500"
n_ctx = 2048
n_threads = 6
n_gpu_layers = -1
gpu_memory_fraction = 0.75
telemetry_interval_s = 0.5
theme = "nord"
[aliases]
tiny = "gemma-3-270m"
"with space" = "/models/x.gguf"
[defaults]
temperature = 0.2
stop = ["a", "b"]
seed = 1
[[remote_endpoints]]
name = "vllm"
url = "http://gpu:8000/v1"
api_key_env = "VLLM_KEY"
api_key = "sk-1"
""",
    )
    first = load_config(env={})
    document = config_to_toml_dict(first)
    assert document["hf_token"] == TOKEN and "data_dir" not in document
    saved = isolated_dirs / "elsewhere" / "saved.toml"
    save_config(document, saved)
    assert _mode(saved) == 0o600
    second = load_config(saved, env={})
    assert second == first and second.source == saved
    assert load_config(saved, env={}) != load_config(env={}, overrides={"n_ctx": 4096})


def test_round_trip_of_defaults_is_empty_unless_asked(isolated_dirs: Path) -> None:
    config = load_config(env={})
    assert config_to_toml_dict(config) == {}
    full = config_to_toml_dict(config, include_defaults=True)
    assert full["n_ctx"] == 4096 and full["data_dir"] == str(config.data_dir) and "hf_token" not in full
    save_config(full, isolated_dirs / "full.toml")
    assert load_config(isolated_dirs / "full.toml", env={}) == config


def test_repo_config_toml_is_the_defaults(isolated_dirs: Path) -> None:
    config = load_config(REPO_CONFIG, env={})
    assert config.warnings == ()
    assert config.models_dir == REPO_CONFIG.parent / "models"
    assert dataclasses.replace(config, models_dir=default_config().models_dir) == default_config()
    text = REPO_CONFIG.read_text()
    for key in (*config_mod.SCALAR_KEYS, "[aliases]", "[defaults]", "[[remote_endpoints]]"):
        assert key in text
    for name in config_mod.ENV_VARS:
        assert name in text
    assert "hf_token = " not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_config_can_be_built_directly() -> None:
    base = Path(platformdirs.user_data_path("llm-tui"))
    aliases = {"a": "b"}
    config = Config(models_dir=base, data_dir=base, cache_dir=base, aliases=aliases)
    aliases["c"] = "d"
    assert dict(config.aliases) == {"a": "b"}
    assert config == Config(models_dir=base, data_dir=base, cache_dir=base, aliases={"a": "b"}, warnings=("w",))


def test_download_settings_from_file_and_environment(isolated_dirs: Path) -> None:
    (isolated_dirs / "config.toml").write_text(
        'download_concurrency = 4\ndownload_bandwidth_cap = "5MB/s"\ndownloads_resume_on_start = true\n'
    )
    config = load_config(env={})
    assert (config.download_concurrency, config.download_bandwidth_cap, config.downloads_resume_on_start) == (
        4,
        5_000_000,
        True,
    )
    env = {"LLM_TUI_DOWNLOAD_BANDWIDTH_CAP": "512KiB/s", "LLM_TUI_DOWNLOADS_RESUME_ON_START": "no"}
    config = load_config(env=env)
    assert (config.download_bandwidth_cap, config.downloads_resume_on_start) == (524_288, False)
    assert load_config(env={"LLM_TUI_DOWNLOAD_BANDWIDTH_CAP": "off"}).download_bandwidth_cap is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("download_concurrency = 0", "download_concurrency must be an integer of at least 1, got 0"),
        ('download_bandwidth_cap = "fast"', "download_bandwidth_cap must be bytes per second, such as 5000000"),
        ('downloads_resume_on_start = "maybe"', 'downloads_resume_on_start must be true or false, got "maybe"'),
    ],
)
def test_bad_download_settings_are_refused_with_the_key(isolated_dirs: Path, line: str, message: str) -> None:
    (isolated_dirs / "config.toml").write_text(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(env={})
