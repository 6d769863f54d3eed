"""[presets.NAME] and [[mcp_servers]] in config.toml: parsing, bad values named with file and key, layering,
redaction and the save round trip."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engines.config.load import config_to_toml_dict, holds_secret, load_config, save_config, user_config_path
from engines.errors import ConfigError
from engines.launch import default_options
from engines.mcp.types import McpServer
from engines.presets import Preset, preset_launch, preset_messages, preset_params, unknown_preset
from engines.secret import MASK
from engines.types import ChatMessage, LaunchOptions, Params

FULL = """
[presets.coder]
description = "Short, exact answers about code"
system = "You are a careful programmer."
temperature = 0.2
top_p = 0.9
top_k = 40
repetition_penalty = 1.1
max_tokens = 512
stop = ["<end>", "\\n\\n\\n"]
seed = 7
model = "gemma-3-270m"

[presets.coder.launch]
n_ctx = 8192
n_threads = "auto"
n_gpu_layers = -1
dtype = "bfloat16"
quantization = "4bit"
parallel = 2

[presets.plain]
system = ""
stop = "###"

[[mcp_servers]]
name = "files"
command = "npx"
args = ["-y", "server-filesystem", "/tmp"]
env = { NOTES_TOKEN = "sk-very-secret-123" }
trusted = ["read_file"]
timeout_s = 12.5

[[mcp_servers]]
name = "search"
url = "http://127.0.0.1:8000/mcp/"
trusted = "*"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_presets_and_mcp_servers_are_read(isolated_dirs: Path) -> None:
    config = load_config(write(isolated_dirs / "c.toml", FULL), env={})
    assert config.warnings == ()
    coder = config.presets["coder"]
    assert coder.description == "Short, exact answers about code" and coder.model == "gemma-3-270m"
    assert coder.system == "You are a careful programmer."
    assert coder.params == Params(
        temperature=0.2, top_p=0.9, top_k=40, repetition_penalty=1.1, max_tokens=512, stop=("<end>", "\n\n\n"), seed=7
    )
    assert coder.launch_keys == ("n_ctx", "n_threads", "n_gpu_layers", "dtype", "quantization", "parallel")
    assert coder.launch == LaunchOptions(n_ctx=8192, n_gpu_layers=-1, dtype="bfloat16", quantization="4bit", parallel=2)
    plain = config.presets["plain"]
    assert (plain.system, plain.params.stop, plain.launch, plain.model) == ("", ("###",), None, None)
    files, search = config.mcp_servers
    assert files == McpServer(
        name="files",
        command="npx",
        args=("-y", "server-filesystem", "/tmp"),
        env={"NOTES_TOKEN": "sk-very-secret-123"},
        trusted=("read_file",),
        timeout_s=12.5,
    )
    assert (files.transport, search.transport) == ("stdio", "http")
    assert search.url == "http://127.0.0.1:8000/mcp" and search.trusts("anything") and not files.trusts("write_file")
    assert config.origins["presets"].startswith("file ") and config.origins["mcp_servers"].startswith("file ")


def test_a_preset_applies_over_a_request_and_the_launch_options(isolated_dirs: Path) -> None:
    config = load_config(write(isolated_dirs / "c.toml", FULL + "\nn_ctx = 2048\nn_threads = 3\n"), env={})
    coder, plain = config.presets["coder"], config.presets["plain"]
    params = preset_params(coder, Params(temperature=1.0, stop=("x",), json_schema="{}"))
    assert (params.temperature, params.stop, params.max_tokens, params.json_schema) == (
        0.2,
        ("<end>", "\n\n\n"),
        512,
        "{}",
    )
    history = [ChatMessage("system", "theirs"), ChatMessage("user", "hi")]
    assert preset_messages(coder, history) == [ChatMessage("system", "You are a careful programmer."), history[1]]
    assert preset_messages(plain, history) == [history[1]]  # system = "" takes the conversation's away
    options = preset_launch(coder, default_options(config))
    # Only what the preset sets changes; threads "auto" is a setting too; offloading layers picks a device.
    assert (options.n_ctx, options.n_threads, options.n_gpu_layers, options.device) == (8192, None, -1, "auto")
    assert options.parallel == 2 and options.speculative is None
    assert preset_launch(plain, default_options(config)) == default_options(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[presets.a]\ntemperature = 9\n", "presets.a: temperature must be between 0 and 5, got 9.0"),
        ('[presets.a]\ntop_k = "many"\n', "presets.a.top_k must be an integer"),
        ("[presets.a]\nstop = [1]\n", "presets.a.stop must be a list of strings, got [1]"),
        ("[presets.a]\nmodel = 3\n", "presets.a.model must be a non-empty string"),
        ("[presets.a]\nsystem = 3\n", "presets.a.system must be a string"),
        ("[presets.a.launch]\nn_ctx = 8\n", "presets.a.launch.n_ctx must be an integer of at least 16, got 8"),
        ('[presets.a.launch]\ndevice = "gpu9"\n', 'presets.a.launch.device must be "cpu", "auto", "cuda", "cuda:N"'),
        ('[presets.a.launch]\ndtype = "int3"\n', 'presets.a.launch.dtype must be "auto" or "float16"'),
        ("[presets.a.launch]\nparallel = 0\n", "presets.a.launch.parallel must be a whole number of slots from 1"),
        ('[presets."two words"]\n', "presets.two words: a preset name uses letters, digits"),
        ("presets = 3\n", "presets must be a table"),
        ("[presets]\na = 1\n", "presets.a must be a table"),
        ("mcp_servers = 1\n", "mcp_servers must be an array of tables ([[mcp_servers]])"),
        ('[[mcp_servers]]\ncommand = "x"\n', "mcp_servers[0]: name is required"),
        ('[[mcp_servers]]\nname = "a"\n', "mcp_servers[0] (a): give exactly one of command"),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\nurl = "http://h"\n', "mcp_servers[0] (a): give exactly one of"),
        ('[[mcp_servers]]\nname = "a"\nurl = "ftp://h"\n', "mcp_servers[0].url must be an http:// or https:// URL"),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\nargs = "-v"\n', "mcp_servers[0].args must be a list of strings"),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\nenv = { A = 1 }\n', "mcp_servers[0].env.A must be a string"),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\nenv = { "A B" = "1" }\n', 'env: "A B" is not an environment'),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\ntrusted = "yes"\n', "mcp_servers[0].trusted must be a list of"),
        ('[[mcp_servers]]\nname = "a"\ncommand = "x"\ntimeout_s = 0\n', "mcp_servers[0].timeout_s must be a positive"),
        ('[[mcp_servers]]\nname = "a b"\ncommand = "x"\n', "mcp_servers[0].name: use letters, digits, _ and -"),
        (
            '[[mcp_servers]]\nname = "a"\ncommand = "x"\n[[mcp_servers]]\nname = "a"\nurl = "http://h"\n',
            "mcp_servers[1].name: 'a' is used by another server; names must be unique",
        ),
    ],
)
def test_bad_values_name_the_file_and_key(isolated_dirs: Path, text: str, message: str) -> None:
    path = write(isolated_dirs / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert message in str(info.value)


def test_an_env_value_is_never_in_an_error(isolated_dirs: Path) -> None:
    path = write(
        isolated_dirs / "bad.toml", '[[mcp_servers]]\nname = "a"\ncommand = "x"\nenv = { "1A" = "sk-s3cr3t" }\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "sk-s3cr3t" not in str(info.value)


def test_unknown_keys_are_warned(isolated_dirs: Path) -> None:
    text = (
        '[presets.a]\ntemprature = 1\n[presets.a.launch]\ngpus = 2\n[[mcp_servers]]\nname = "m"\ncommand = "x"\n'
        'cwd = "/"\n[[mcp_servers]]\nname = "n"\nurl = "http://h"\nargs = ["-v"]\n'
    )
    path = write(isolated_dirs / "c.toml", text)
    config = load_config(path, env={})
    assert config.warnings == (
        f"{path}: presets.a: unknown key 'temprature' ignored (known keys: description, system, temperature, top_p, "
        "top_k, repetition_penalty, max_tokens, seed, stop, model, launch)",
        f"{path}: presets.a.launch: unknown key 'gpus' ignored (known keys: n_ctx, n_threads, n_gpu_layers, device, "
        "dtype, quantization, parallel, speculative, chat_template, idle_unload_s)",
        f"{path}: mcp_servers[0]: unknown key 'cwd' ignored (known keys: name, command, url, args, env, trusted, "
        "timeout_s)",
        f"{path}: mcp_servers[1] (n): args are for a command; ignored with url",
    )
    assert config.presets["a"] == Preset(name="a", launch=LaunchOptions(), launch_keys=())
    assert config.mcp_servers[1].args == ()


def test_presets_merge_by_name_over_the_local_defaults(isolated_dirs: Path) -> None:
    write(isolated_dirs / "config.toml", '[presets.a]\ntemperature = 0.1\n[presets.b]\nsystem = "from below"\n')
    write(user_config_path(), '[presets.b]\nmax_tokens = 9\n[presets.c]\ndescription = "mine"\n')
    config = load_config(env={})
    assert sorted(config.presets) == ["a", "b", "c"]
    assert config.presets["a"].params.temperature == 0.1
    # The user's [presets.b] replaces the one below it as a whole: its system prompt is not inherited.
    assert config.presets["b"] == Preset(name="b", params=Params(max_tokens=9))
    assert config.presets["c"].description == "mine"


def test_mcp_servers_of_the_users_file_replace_those_below(isolated_dirs: Path) -> None:
    write(isolated_dirs / "config.toml", '[[mcp_servers]]\nname = "a"\ncommand = "x"\n')
    write(user_config_path(), '[[mcp_servers]]\nname = "b"\nurl = "http://h"\n')
    assert [s.name for s in load_config(env={}).mcp_servers] == ["b"]


def test_redacted_masks_env_values_and_is_json(isolated_dirs: Path) -> None:
    config = load_config(write(isolated_dirs / "c.toml", FULL), env={})
    shown = config.redacted()
    text = json.dumps(shown)
    assert "sk-very-secret-123" not in text and "sk-very-secret-123" not in repr(config)
    files = shown["mcp_servers"][0]  # type: ignore[index]
    assert files["env"] == {"NOTES_TOKEN": MASK} and files["command"] == "npx" and files["timeout_s"] == 12.5
    coder = shown["presets"]["coder"]  # type: ignore[index]
    assert coder["temperature"] == 0.2 and coder["launch"]["n_ctx"] == 8192 and coder["model"] == "gemma-3-270m"


def test_save_round_trip_and_private_file(isolated_dirs: Path) -> None:
    first = load_config(write(isolated_dirs / "c.toml", FULL), env={})
    document = config_to_toml_dict(first)
    assert document["mcp_servers"][1] == {"name": "search", "url": "http://127.0.0.1:8000/mcp", "trusted": ["*"]}  # type: ignore[index]
    assert document["presets"]["coder"]["launch"]["n_threads"] == "auto"  # type: ignore[index]
    saved = isolated_dirs / "saved" / "config.toml"
    save_config(document, saved)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # an MCP env table may hold keys
    second = load_config(saved, env={})
    assert second == first and second.presets == first.presets and second.mcp_servers == first.mcp_servers
    assert second.warnings == ()
    no_env = load_config(write(isolated_dirs / "d.toml", '[[mcp_servers]]\nname = "a"\ncommand = "x"\n'), env={})
    assert not holds_secret(config_to_toml_dict(no_env)) and not holds_secret(no_env.mcp_servers)
    assert holds_secret(first.mcp_servers) and holds_secret(document)


def test_save_refuses_a_bad_preset(isolated_dirs: Path) -> None:
    target = isolated_dirs / "x.toml"
    with pytest.raises(ConfigError, match=r"presets\.a: temperature must be between 0 and 5"):
        save_config({"presets": {"a": {"temperature": 7}}}, target)
    assert not target.exists()


def test_unknown_preset_line_lists_the_known_names() -> None:
    assert unknown_preset("x", {"b": Preset("b"), "a": Preset("a")}) == "no preset named 'x' (known: a, b)"
    assert "the config has none" in unknown_preset("x", {})
