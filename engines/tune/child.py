"""The training child process: `python -m engines.tune.child RUN_DIR`.

It reads RUN_DIR/run.json, loads the base model the way the transformers engine does (a GGUF through the engine's
conversion cache), encodes the data, wraps the model in a PEFT LoRA (QLoRA: a 4-bit base, CUDA and bitsandbytes
only) and trains (engines.tune.train_loop), resuming from the newest complete checkpoint when there is one.

Every event is one JSON line on stdout (flushed) and appended to RUN_DIR/events.jsonl. SIGTERM or SIGINT asks for a
stop: a checkpoint, then Stopped, exit 0. Any error: Failed(message), the traceback on stderr, exit 1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from engines.adapters.transformers_load import check_folder, describe, load_plan, load_weights
from engines.errors import BadRequest, LlmTuiError, ModelNotFound
from engines.tune import checkpoint
from engines.tune.checkpoint import TrainState
from engines.tune.paths import ADAPTER, EVENTS, RunFile, read_run_file
from engines.tune.train_loop import Trainer, total_steps
from engines.tune.types import Failed, Finished, LengthStats, Started, Status, TuneEvent, TuneOptions
from engines.types import LaunchOptions, ModelSpec


class Emitter:
    """Sends events: a JSON line on stdout (until the parent is gone) and one appended to events.jsonl."""

    def __init__(self, run_dir: Path, out: IO[str]) -> None:
        self._log = open(run_dir / EVENTS, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._out: IO[str] | None = out
        self._lock = threading.Lock()

    def __call__(self, event: TuneEvent) -> None:
        from engines.tune.events import to_line

        line = to_line(event)
        with self._lock:
            self._log.write(line + "\n")
            self._log.flush()
            if self._out is not None:
                try:
                    self._out.write(line + "\n")
                    self._out.flush()
                except (BrokenPipeError, OSError, ValueError):
                    self._out = None  # the parent is gone: events.jsonl still has everything

    def close(self) -> None:
        self._log.close()


def quantization_refusal(quantize: str | None) -> str | None:
    """Why QLoRA cannot run here (None when it can, or when no quantization is asked)."""
    if quantize is None:
        return None
    if quantize != "4bit":
        return f"quantize {quantize!r}: QLoRA takes '4bit' only"
    import torch

    if not torch.cuda.is_available():
        return f"QLoRA (a 4-bit base) needs a CUDA GPU; this machine has none (torch {torch.__version__})"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "QLoRA (a 4-bit base) needs the 'bitsandbytes' package: pip install bitsandbytes"
    return None


def launch_options(options: TuneOptions) -> LaunchOptions:
    """How to load the base: "auto" is the GPU when there is one (a whole model on one device), else the CPU."""
    import torch

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return LaunchOptions(device=device, dtype=options.dtype, quantization=options.quantize)


def model_folder(run: RunFile, emit: Any) -> Path:
    """The Hugging Face folder to load: the base folder itself, or a GGUF's conversion in the engine's cache."""
    from engines.adapters import transformers_convert

    if run.base_format == "gguf":
        if not run.base_path.is_file():
            raise ModelNotFound(f"model file not found: {run.base_path}")
        return transformers_convert.ensure_converted(run.base_path, run.cache_dir, lambda m: emit(Status(m)))
    if run.base_format != "hf":
        raise BadRequest(f"fine-tuning loads 'hf' folders and 'gguf' files, not {run.base_format!r}")
    if not run.base_path.is_dir():
        raise ModelNotFound(f"model folder not found: {run.base_path}")
    check_folder(run.base_path)
    return run.base_path


def train(run_dir: Path, emit: Any, stop: threading.Event) -> int:
    import peft
    import torch
    import transformers

    from engines.adapters.transformers_convert import quiet_progress_bars
    from engines.tune.data import read_rows, split_rows
    from engines.tune.encode import chat_template_for, encode_rows, length_stats
    from engines.tune.modules import default_target_modules

    run = read_run_file(run_dir)
    options = run.options
    if run.n_threads:
        torch.set_num_threads(run.n_threads)
    refusal = quantization_refusal(options.quantize)
    if refusal:
        raise BadRequest(refusal)
    plan = load_plan(launch_options(options))
    folder = model_folder(run, emit)

    emit(Status("reading the data"))
    rows, problems = read_rows(run.data_path)
    if problems:
        shown = "; ".join(f"line {p.line}: {p.message}" for p in problems[:5])
        raise BadRequest(f"{run.data_path}: {len(problems)} bad row(s): {shown}")
    given_val = None
    if options.val_file is not None:
        given_val, val_problems = read_rows(options.val_file)
        if val_problems:
            raise BadRequest(
                f"{options.val_file}: {len(val_problems)} bad row(s), first on line {val_problems[0].line}"
            )
    train_rows, val_rows = split_rows(rows, val_rows=given_val, val_fraction=options.val_fraction, seed=options.seed)
    if not train_rows:
        raise BadRequest(f"{run.data_path}: no training rows left after the validation split")

    with quiet_progress_bars():
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:
            raise BadRequest(f"{run.base}: transformers cannot load its tokenizer: {describe(exc)}") from None
        spec = ModelSpec(
            id=run.base,
            path=run.base_path,
            format="gguf" if run.base_format == "gguf" else "hf",
            chat_template=run.chat_template,
        )
        template = chat_template_for(tokenizer, spec)
        emit(Status(f"tokenizing {len(train_rows)} training and {len(val_rows)} validation rows"))
        train_set = encode_rows(tokenizer, template, train_rows, options.max_seq_len)
        val_set = encode_rows(tokenizer, template, val_rows, options.max_seq_len)
        emit(Status(length_line(length_stats([*train_set, *val_set], options.max_seq_len), options.max_seq_len)))

        emit(Status(f"loading {run.base}"))
        model = load_weights(transformers.AutoModelForCausalLM, folder, plan, run.base_path)
    if options.quantize:
        model = peft.prepare_model_for_kbit_training(model)  # type: ignore[no-untyped-call]
    torch.manual_seed(options.seed)
    lora = peft.LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules or default_target_modules(model)),
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate)
    steps = total_steps(options, len(train_set))
    scheduler = transformers.get_scheduler(
        options.schedule.value, optimizer, num_warmup_steps=options.warmup_steps, num_training_steps=steps
    )
    start = TrainState(0, 0, 0)
    found = checkpoint.latest(run_dir)
    if found is not None:
        emit(Status(f"resuming from {found[0].name}"))
        checkpoint.load(found[0], model, optimizer, scheduler)
        start = found[1]
    device = next(p.device for p in params)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    emit(
        Started(
            total_steps=steps,
            resumed_from=start.step,
            train_rows=len(train_set),
            val_rows=len(val_set),
            trainable_params=int(trainable),
            total_params=int(total),
            device=str(device),
        )
    )
    outcome = Trainer(
        model,
        optimizer,
        scheduler,
        train_set,
        val_set,
        options,
        int(pad_id or 0),
        device,
        run_dir,
        steps,
        emit,
        stop,
        start,
    ).run()
    if outcome.how == "stopped":
        return 0

    adapter = run_dir / ADAPTER
    tmp = run_dir / f".{ADAPTER}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(adapter, ignore_errors=True)
    os.replace(tmp, adapter)
    merged = None
    if options.merge:
        emit(Status(f"merging the adapter into {run.name}"))
        from engines.tune.merge import merge_adapter

        provenance = {"run": run.name, "base": run.base, "data_sha256": run.data_sha256, "adapter": str(adapter)}
        merged = merge_adapter(folder, adapter, run.models_dir / run.name, provenance, chat_template=template or None)
    emit(Finished(adapter_dir=adapter, merged_dir=merged, final_loss=outcome.loss, val_loss=outcome.val_loss))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m engines.tune.child RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    if not run_dir.is_dir():
        print(f"no run folder {run_dir}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emit = Emitter(run_dir, sys.stdout)
    try:
        return train(run_dir, emit, stop)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        message = str(exc) if isinstance(exc, LlmTuiError) else describe(exc)
        if isinstance(exc, MemoryError):
            message = f"out of memory: {message}"
        emit(Failed(message))
        return 1
    finally:
        emit.close()


def length_line(stats: LengthStats, max_seq_len: int) -> str:
    """The rows' token lengths after the chat template, as the Tune screen and the CLI show them before training."""
    cut = f"{stats.over_max} over {max_seq_len} (cut to it)" if stats.over_max else f"none over {max_seq_len}"
    return (
        f"tokens per row (chat template applied): min {stats.minimum}, median {stats.median}, "
        f"p95 {stats.p95}, max {stats.maximum}; {cut}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
