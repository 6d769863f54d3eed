"""Training tokens/s through llm-tui (TuneProcess → the training child) ÷ a plain PEFT + transformers loop written
here, on the same model, data, LoRA settings, batches, sequence length and steps, in one process run.

The plain loop is what one would write by hand: `model(input_ids, attention_mask, labels=labels).loss`, backward,
clip, AdamW, scheduler. llm-tui's loop sends only the positions that learn a token through the output layer
(`logits_to_keep`), a large share of a step with Gemma's 262k vocabulary, so a second plain variant doing the same
shows the child's own overhead apart from that. The plain loops run before and after the llm-tui run so drift in
machine load hits both alike. Tokens are the learned (assistant) tokens of a step; the figure of each path is the
median over its steps of tokens ÷ the step's wall time, the first step left out as warm-up. Prints the figures and
the ratios llm-tui/plain (target >= 0.95). Nothing is asserted.

    python bench/tune_tokens.py [--steps 8] [--batch 4] [--seq-len 64] [--threads 2] [--model PATH] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.catalog.resolve import resolve_model
from engines.config.load import Config
from engines.tune.types import StepDone, TuneEvent, TuneOptions

TOPICS = ("rivers", "owls", "bread", "comets", "violins", "glaciers", "bees", "lighthouses")


def default_model() -> Path:
    import platformdirs

    spec = resolve_model("gemma-3-270m", models_dir=Path(platformdirs.user_cache_dir("llm-tui-tests")))
    assert spec.path is not None
    return spec.path


def default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm-tui-tests")) / "xdg-cache" / "llm-tui"


def write_data(path: Path, rows: int) -> Path:
    lines = []
    for i in range(rows):
        topic = TOPICS[i % len(TOPICS)]
        question = f"Tell me two short facts about {topic} (note {i})."
        answer = f"Fact one: {topic} are remarkable in many ways. Fact two: people have studied {topic} for ages."
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n")
    return path


def run_llm_tui(config: Config, model: Path, data: Path, options: TuneOptions) -> list[float]:
    """Per-step tokens/s the child reports (learned tokens of the step ÷ its wall time)."""
    from engines.tune.process import TuneProcess

    events: list[TuneEvent] = []
    proc = TuneProcess.start(config, str(model), data, "bench", options, events.append)
    code = proc.wait(timeout=1800)
    if code != 0:
        raise SystemExit(f"the llm-tui run failed ({code}): {events[-2:]}")
    return [e.tokens_per_s for e in events if isinstance(e, StepDone)]


class Plain:
    """The hand-written PEFT + transformers loop, on the folder the child loads (the GGUF's conversion)."""

    def __init__(self, folder: Path, data: Path, options: TuneOptions, template: str) -> None:
        import peft
        import torch
        import transformers

        from engines.tune.data import read_rows
        from engines.tune.encode import encode_rows
        from engines.tune.modules import default_target_modules

        self.options = options
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        rows, _ = read_rows(data)
        self.examples = encode_rows(tokenizer, template, rows, options.max_seq_len)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        base = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        torch.manual_seed(options.seed)
        lora = peft.LoraConfig(
            r=options.rank,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=list(default_target_modules(base)),
            task_type="CAUSAL_LM",
        )
        self.model: Any = peft.get_peft_model(base, lora)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=options.learning_rate)
        self.scheduler = transformers.get_scheduler(
            "cosine", self.optimizer, num_warmup_steps=0, num_training_steps=10_000
        )

    def run(self, steps: int, offset: int, *, keep: bool = False) -> list[float]:
        import torch

        out = []
        n, b = len(self.examples), self.options.batch_size
        for step in range(steps):
            start = ((offset + step) * b) % n
            batch = [self.examples[(start + i) % n] for i in range(b)]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.tensor([e.input_ids + [self.pad] * (width - len(e.input_ids)) for e in batch])
            mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch])
            labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in batch])
            learned = int((labels[:, 1:] != -100).sum())
            began = time.perf_counter()
            loss: Any
            if keep:  # logits only where a label is learned, as llm-tui's loop does
                targets = labels[:, 1:]
                where = (targets != -100).any(dim=0).nonzero().squeeze(1)
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=where).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(), targets[:, where].reshape(-1), ignore_index=-100
                )
            else:
                loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            out.append(learned / (time.perf_counter() - began))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None, help="llm-tui's cache dir (holds transformers/)")
    args = parser.parse_args()

    import torch

    from engines.adapters.transformers_convert import ensure_converted
    from engines.tune.encode import chat_template_for

    model = args.model or default_model()
    cache = args.cache_dir or default_cache()
    folder = ensure_converted(model, cache / "transformers", print)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = TuneOptions(
        rank=8,
        alpha=16,
        dropout=0.0,
        learning_rate=2e-4,
        max_steps=args.steps,
        batch_size=args.batch,
        max_seq_len=args.seq_len,
        val_fraction=0.0,
        eval_every=10_000,
        save_every=10_000,
    )
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        root = Path(tmp)
        data = write_data(root / "train.jsonl", 64)
        config = Config(models_dir=root / "models", data_dir=root / "data", cache_dir=cache, n_threads=args.threads)
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        template = chat_template_for(tokenizer, resolve_model(str(model), models_dir=model.parent))
        plain = Plain(folder, data, options, template)
        half = max(2, args.steps // 2 + 1)
        plain_rates = plain.run(half, 0)[1:]
        kept_rates = plain.run(half, 0, keep=True)[1:]
        tune_rates = run_llm_tui(config, model, data, options)[1:]
        kept_rates += plain.run(half, half, keep=True)[1:]
        plain_rates += plain.run(half, half)[1:]
    plain_tps, tune_tps = statistics.median(plain_rates), statistics.median(tune_rates)
    kept_tps = statistics.median(kept_rates)
    print(
        f"model {model.name}, {args.steps} steps, batch {args.batch}, max seq len {args.seq_len}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"plain PEFT loop: {plain_tps:8.1f} trained tokens/s (median of {len(plain_rates)} steps)")
    print(f"llm-tui child:   {tune_tps:8.1f} trained tokens/s (median of {len(tune_rates)} steps)")
    print(f"plain loop, logits only at learned positions: {kept_tps:8.1f} trained tokens/s")
    print(f"ratio llm-tui/plain: {tune_tps / plain_tps:.3f} (target >= 0.95)")
    print(f"ratio llm-tui/plain with the same output-layer work: {tune_tps / kept_tps:.3f} (the child's own overhead)")


if __name__ == "__main__":
    main()
