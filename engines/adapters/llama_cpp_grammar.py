"""The GBNF grammar llama.cpp samples a JSON-schema reply with, built and test-run in a child process first.

llama.cpp's grammar code is native: a grammar it cannot parse comes back as a null sampler that llama-cpp-python
samples with anyway (SIGSEGV), and a deep enough grammar overflows the parser's stack. schema_limits keeps
schemas far from both, but a list of limits can miss something; so each distinct schema is also built, parsed
and sampled for a few steps over the model's own vocabulary in a child process, once per (model, schema sha256)
for the life of this process. A child that dies or hangs costs a 400, never the server.

Run as `python -m engines.adapters.llama_cpp_grammar MODEL_PATH` with the schema on stdin, it is that child.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from engines.structured.limits import SchemaRefused

TEST_RUN_TIMEOUT_S = 30.0
"""A child that has not answered by then is killed and the schema refused (it takes about 1 s)."""
MAX_GRAMMAR_BYTES = 512 * 1024
"""The GBNF text built from one schema (100 string properties of maxLength 500 build 413 KB)."""
TEST_RUN_STEPS = 8
"""Tokens the test run samples through the grammar, each over the whole vocabulary."""
STEP_BUDGET_S = 5.0
"""Longest one sampled token may take in the test run: a grammar slower than that would stall every reply that
uses it. Real schemas take 0.05-0.3 s; 256 enum values up to 2.4 s with 2 cores shared by 5 busy processes."""
_CHILD_MEMORY_BYTES = 4 * 1024**3
"""Memory the child may allocate (RLIMIT_DATA, which GPU drivers' address-space reservations do not count against,
unlike RLIMIT_AS): a grammar that would eat the machine fails there instead. A run takes 150-260 MB."""

CACHE_ENTRIES = 256
"""Schemas whose outcome is kept, least recently used dropped first: distinct schemas cannot grow memory forever."""

_cache: OrderedDict[tuple[str, str], str | SchemaRefused] = OrderedDict()
_guard = threading.Lock()
_one_run = threading.Lock()
"""One test run at a time, whichever instance asks: a burst of new schemas queues instead of filling the cores."""


def vetted_grammar(schema_text: str, model_path: Path) -> str:
    """The GBNF for `schema_text`, once a child process has built and sampled it on this model's vocabulary.

    Raises SchemaRefused when the child refused, died, was too slow or timed out. Grammars, refusals and crashes
    are kept for the next request with the same schema; slowness and time-outs (maybe the machine's load) are not."""
    key = (str(model_path), hashlib.sha256(schema_text.encode("utf-8", "surrogatepass")).hexdigest())
    found = _cached(key)
    if found is None:
        with _one_run:
            found = _cached(key)  # another request may have run it while this one waited
            if found is None:
                found, final = _test_run(schema_text, model_path)
                if final:  # a time-out may be the machine's load, not the schema: the next request tries again
                    with _guard:
                        _cache[key] = found
                        while len(_cache) > CACHE_ENTRIES:
                            _cache.popitem(last=False)
    if isinstance(found, SchemaRefused):
        raise SchemaRefused(str(found))
    return found


def _cached(key: tuple[str, str]) -> str | SchemaRefused | None:
    with _guard:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _child_command(model_path: Path) -> list[str]:
    # -P: the working directory is not put on the child's import path (a stray engines/ or llama_cpp/ there).
    return [sys.executable, "-P", "-m", __name__, str(model_path)]


def _test_run(schema_text: str, model_path: Path) -> tuple[str | SchemaRefused, bool]:
    """The grammar or the refusal, and whether it is final (worth keeping for the next request)."""
    try:
        done = subprocess.run(
            _child_command(model_path),
            env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""},  # a vocabulary needs no GPU
            input=schema_text.encode("utf-8", "surrogatepass"),
            capture_output=True,
            timeout=TEST_RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        took = f"took more than {TEST_RUN_TIMEOUT_S:g} s in a test run; simplify it"
        return SchemaRefused(f"json_schema: the schema's grammar {took}"), False
    if done.returncode < 0:
        name = _signal_name(-done.returncode)
        crashed = f"json_schema: the schema's grammar crashed the grammar engine in a test run ({name})"
        return SchemaRefused(crashed), True
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return SchemaRefused(f"json_schema: the schema's grammar test run failed: {last[0][:200]}"), False
    if "grammar" in answer:
        return str(answer["grammar"]), True
    if "slow" in answer:  # load can do this too: not kept, the next request measures again
        took = f"took {float(answer['slow']):.1f} s for one token in a test run; the limit is {STEP_BUDGET_S:g} s"
        return SchemaRefused(f"json_schema: the schema's grammar {took}"), False
    if "unparsed" in answer:
        why = _parse_error(done.stderr.decode("utf-8", "replace"))
        return SchemaRefused(f"llama.cpp cannot follow this JSON schema: its grammar does not parse ({why})"), True
    return SchemaRefused(str(answer.get("refused", "json_schema: the schema's grammar test run failed"))), True


def _parse_error(stderr: str) -> str:
    marker = "error parsing grammar:"
    line = next((line for line in stderr.splitlines() if marker in line), "")
    return line.split(marker, 1)[1].strip()[:300] if line else "no reason given"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def build_gbnf(schema_text: str) -> str:
    """The GBNF text llama-cpp-python's converter makes of the schema; SchemaRefused when it cannot or it is too big."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf: str = json_schema_to_gbnf(schema_text)
    except Exception as exc:  # the converter rejects what it cannot express (unknown types, remote $ref...)
        raise SchemaRefused(f"llama.cpp cannot follow this JSON schema: {type(exc).__name__}: {exc}") from None
    size = len(gbnf.encode("utf-8"))
    if size > MAX_GRAMMAR_BYTES:
        raise SchemaRefused(
            f"json_schema: the grammar built from the schema is {size} bytes; the limit is {MAX_GRAMMAR_BYTES}"
        )
    return gbnf


def _child(model_path: str) -> dict[str, str]:
    """Build the grammar, parse it natively against the model's vocabulary and sample a few tokens through it."""
    import ctypes

    import llama_cpp
    import numpy as np

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def quiet(level: int, text: bytes, user_data: Any) -> None:
        """The model loader's chatter would only fill the parent's pipe."""

    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    schema_text = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    try:
        gbnf = build_gbnf(schema_text)
    except SchemaRefused as exc:
        return {"refused": str(exc)}
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # the tokenizer is all a grammar needs: a fraction of a second, no weights
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        return {"refused": f"json_schema: the grammar test run could not read the model's vocabulary ({model_path})"}
    vocab = llama_cpp.llama_model_get_vocab(model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:  # llama.cpp wrote why on stderr (not through its log callback); the parent reads it there
        return {"unparsed": "yes"}
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    candidates = np.zeros(n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
    rng = np.random.default_rng(0)
    for _ in range(TEST_RUN_STEPS):
        started = time.monotonic()
        candidates["id"] = np.arange(n_vocab, dtype=np.int32)
        candidates["logit"] = 0.0
        candidates["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), n_vocab, -1, False
        )
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        allowed = candidates["id"][: array.size][np.isfinite(candidates["logit"][: array.size])]
        if allowed.size == 0:
            break
        token = int(rng.choice(allowed))
        if llama_cpp.llama_vocab_is_eog(vocab, token):  # the grammar allows the reply to end here
            break
        llama_cpp.llama_sampler_accept(sampler, token)
        if (took := time.monotonic() - started) > STEP_BUDGET_S:
            return {"slow": str(took)}
    llama_cpp.llama_sampler_free(sampler)
    llama_cpp.llama_model_free(model)
    return {"grammar": gbnf}


if __name__ == "__main__":
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (_CHILD_MEMORY_BYTES, _CHILD_MEMORY_BYTES))
    sys.stdout.write(json.dumps(_child(sys.argv[1])))
