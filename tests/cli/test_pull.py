"""`llm-tui models pull` against a fake Hub: SIGKILLed mid-download and run again, it finishes verified."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.engines.fake_hub import FakeHub, Fault

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "c0ffee" * 6 + "c0ff"  # what the fake hub's metadata answer names


def pull_cmd(tmp: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    models = tmp / "models"
    (tmp / "config.toml").write_text(f'models_dir = "{models}"\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": "hf_secret_token",
    }
    cmd = [sys.executable, "-m", "cli.main", "--config", str(tmp / "config.toml"), "models", "pull", *args]
    return cmd, env


def parts(models: Path) -> list[Path]:
    return list(models.glob("*.part")) if models.exists() else []


def test_killed_pulls_resume_and_finish_with_the_right_sha256(tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    slow = Fault(throttle_bps=400_000)
    with FakeHub() as hub:
        hub.add_repo("org/tiny-GGUF", {"tiny.gguf": data, "README.md": b"# tiny"})
        hub.files[hub.resolve_path("org/tiny-GGUF", "tiny.gguf", COMMIT)].default = slow
        cmd, env = pull_cmd(tmp_path, "org/tiny-GGUF", "--file", "tiny.gguf")
        env["HF_ENDPOINT"] = hub.url("")
        models = tmp_path / "models"
        final = models / "tiny.gguf"
        sizes = []
        for _ in range(2):  # killed twice at different points
            child = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            floor = sizes[-1] if sizes else 0
            deadline = time.monotonic() + 30
            while not any(p.stat().st_size > floor + 200_000 for p in parts(models)):
                assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
                assert time.monotonic() < deadline, "the part never grew"
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert not final.exists()  # never a partial file at the final path
            (part,) = parts(models)
            sizes.append(part.stat().st_size)
        assert sizes[1] > sizes[0]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(final)
        assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert "verified" in done.stderr and "resumed at" in done.stderr
        assert parts(models) == []
        assert "hf_secret_token" not in done.stderr
        assert all(r.headers.get("authorization") == "Bearer hf_secret_token" for r in hub.requests)


def test_a_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with FakeHub() as hub:
        cmd, env = pull_cmd(tmp_path, "org/none-GGUF", "--file", "none.gguf")
        env["HF_ENDPOINT"] = hub.url("")
        result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("llm-tui: ") and "org/none-GGUF is not on" in result.stderr
    assert "hf_secret_token" not in result.stderr and result.stderr.count("\n") == 1


def test_ollama_pull_streams_through_the_daemon_and_its_error_is_one_line(tmp_path: Path) -> None:
    from tests.engines.fake_ollama import FakeOllama, PullFault

    with FakeOllama(step=100_000) as fake:
        fake.add("qwen2.5:0.5b", [1_000_000, 3_000_000])
        fake.add("broken:1b", [400_000], PullFault(error_after=200_000, error="max retries exceeded: unexpected EOF"))
        cmd, env = pull_cmd(tmp_path, "ollama:qwen2.5:0.5b")
        env["OLLAMA_HOST"] = fake.host
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "ollama:qwen2.5:0.5b\n"
        assert done.stderr.startswith("qwen2.5:0.5b: 4 MB in 2 layers pulled by Ollama (digest ")

        cmd, env = pull_cmd(tmp_path, "ollama:broken:1b")
        env["OLLAMA_HOST"] = fake.host
        failed = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == "llm-tui: error: ollama: max retries exceeded: unexpected EOF\n"

    cmd, env = pull_cmd(tmp_path, "ollama:qwen2.5", "--file", "x.gguf")
    refused = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--file, --revision and --to are for Hugging Face pulls" in refused.stderr


def test_a_whole_repo_into_models_dir_and_files_into_the_hugging_face_cache(tmp_path: Path) -> None:
    """No --file: every file of the repo into models_dir/<name>/; --to cache: the layout huggingface_hub reads."""
    weights, config = os.urandom(300_000), b'{"model_type": "bert"}'
    with FakeHub() as hub:
        hub.add_repo(
            "org/embed",
            {"model.safetensors": weights, "config.json": config, "sub/vocab.txt": b"a\nb"},
            lfs=["model.safetensors"],
        )
        cmd, env = pull_cmd(tmp_path, "org/embed")
        env["HF_ENDPOINT"] = hub.endpoint
        whole = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert whole.returncode == 0, whole.stderr
        folder = tmp_path / "models" / "embed"
        assert sorted(whole.stdout.split()) == sorted(
            str(folder / p) for p in ("model.safetensors", "config.json", "sub/vocab.txt")
        )
        assert (folder / "model.safetensors").read_bytes() == weights and (folder / "sub/vocab.txt").exists()

        cache = tmp_path / "hf-cache"
        cmd, env = pull_cmd(tmp_path, "org/embed", "--file", "*.json", "--file", "model.safetensors", "--to", "cache")
        env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=str(cache))
        cached = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert cached.returncode == 0, cached.stderr
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache

        for name, data in (("config.json", config), ("model.safetensors", weights)):
            found = try_to_load_from_cache("org/embed", name, cache_dir=cache)
            assert isinstance(found, str) and Path(found).read_bytes() == data and found in cached.stdout
        assert try_to_load_from_cache("org/embed", "sub/vocab.txt", cache_dir=cache) is None  # not asked for
        (info,) = scan_cache_dir(cache).repos
        assert info.repo_id == "org/embed" and info.size_on_disk == len(weights) + len(config)

        cmd, env = pull_cmd(tmp_path, "org/embed", "--file", "missing.bin")
        env["HF_ENDPOINT"] = hub.endpoint
        missing = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "org/embed has no file 'missing.bin' at commit c0ffeec0ffee" in missing.stderr
