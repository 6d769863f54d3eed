"""The training loop itself: a plain torch loop over encoded examples (no HF Trainer), so every step, validation,
checkpoint and stop is an event the parent sees as it happens.

The micro-batches form one stream over the epochs: epoch `e` visits the training examples in an order fixed by
(seed, e), so a resumed run continues exactly where its checkpoint's (epoch, position) left off. An optimizer step
takes `grad_accum` micro-batches; its loss is the mean over the step's learned tokens (labels shifted by one, as
Hugging Face models do when given labels).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.tune import checkpoint
from engines.tune.checkpoint import TrainState
from engines.tune.types import Checkpointed, StepDone, Stopped, TuneEvent, TuneOptions, Validated

if TYPE_CHECKING:
    from engines.tune.encode import Example

IGNORE = -100
Emit = Callable[[TuneEvent], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the loop ended: "finished" (all steps done) or "stopped" (on request, after a checkpoint)."""

    how: str
    step: int
    loss: float | None
    val_loss: float | None


def micro_batches_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, math.ceil(n_train / batch_size))


def total_steps(options: TuneOptions, n_train: int) -> int:
    """Optimizer steps of the run: max_steps when set, else `epochs` worth of them (at least one)."""
    if options.max_steps is not None:
        return max(1, options.max_steps)
    per_epoch = micro_batches_per_epoch(n_train, options.batch_size) / max(1, options.grad_accum)
    return max(1, math.ceil(options.epochs * per_epoch))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The training examples' order in `epoch`: a shuffle that depends only on (seed, epoch)."""
    order = list(range(n))
    random.Random(f"llm-tui-tune:{seed}:{epoch}").shuffle(order)
    return order


def collate(examples: Sequence[Example], pad_id: int, device: Any) -> tuple[Any, Any, Any, int]:
    """Right-padded input ids, attention mask and labels (-100 on padding) as tensors, and the learned-token count
    (labels that are not -100 after the shift by one)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
    learned = int((labels[:, 1:] != IGNORE).sum())
    return ids.to(device), mask.to(device), labels.to(device), learned


def summed_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Sum of the token cross-entropies over the learned tokens (logits at t predict the label at t+1).

    Only the positions some row learns from go through the output layer (`logits_to_keep`): with a large
    vocabulary that layer is much of a step's work, and a chat row learns from its replies only."""
    import torch.nn.functional as F

    targets = labels[:, 1:]
    positions = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    try:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=positions).logits
    except TypeError:  # a model without logits_to_keep: every position
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :][:, positions, :]
    picked = targets[:, positions]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), picked.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def validation_loss(model: Any, examples: Sequence[Example], batch_size: int, pad_id: int, device: Any) -> float:
    """Mean loss over the learned tokens of `examples`, without gradients (dropout off)."""
    import torch

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                ids, mask, labels, learned = collate(examples[start : start + batch_size], pad_id, device)
                if learned:
                    total += float(summed_loss(model, ids, mask, labels))
                    tokens += learned
    finally:
        model.train(was_training)
    return total / tokens if tokens else math.nan


def memory_bytes() -> int:
    """RSS of this process, plus CUDA memory allocated by torch."""
    import psutil
    import torch

    used = int(psutil.Process().memory_info().rss)
    if torch.cuda.is_available():
        used += int(torch.cuda.memory_allocated())
    return used


@dataclass
class Trainer:
    """One run's loop; `run()` trains from `start` to `steps` and returns how it ended."""

    model: Any
    optimizer: Any
    scheduler: Any
    train: Sequence[Example]
    val: Sequence[Example]
    options: TuneOptions
    pad_id: int
    device: Any
    run_dir: Path
    steps: int
    emit: Emit
    stop: threading.Event
    start: TrainState

    def run(self) -> Outcome:
        import torch

        options, n = self.options, len(self.train)
        per_epoch = micro_batches_per_epoch(n, options.batch_size)
        stream = self.start.epoch * per_epoch + self.start.position
        step, loss, val_loss = self.start.step, None, None
        order_epoch, order = -1, list[int]()
        params = [p for p in self.model.parameters() if p.requires_grad]
        began, durations = time.monotonic(), list[float]()
        self.model.train()
        while step < self.steps:
            if self.stop.is_set():
                return self._stopped(step, stream, per_epoch, loss, val_loss)
            started = time.monotonic()
            micro = []
            for _ in range(max(1, options.grad_accum)):
                epoch, position = divmod(stream, per_epoch)
                if epoch != order_epoch:
                    order_epoch, order = epoch, epoch_order(n, options.seed, epoch)
                picked = order[position * options.batch_size : (position + 1) * options.batch_size]
                micro.append(collate([self.train[i] for i in picked], self.pad_id, self.device))
                stream += 1
            learned = sum(m[3] for m in micro)
            step_loss = 0.0
            for ids, mask, labels, count in micro:
                if count == 0:
                    continue
                part = summed_loss(self.model, ids, mask, labels) / learned
                part.backward()
                step_loss += float(part.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            rate = float(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = step_loss
            took = time.monotonic() - started
            durations.append(took)
            mean = sum(durations) / len(durations)
            self.emit(
                StepDone(
                    step=step,
                    epoch=stream / per_epoch,
                    loss=loss,
                    learning_rate=rate,
                    tokens_per_s=learned / took if took > 0 else 0.0,
                    memory_bytes=memory_bytes(),
                    elapsed_s=time.monotonic() - began,
                    eta_s=mean * (self.steps - step),
                )
            )
            if self.val and (step % max(1, options.eval_every) == 0 or step == self.steps):
                val_loss = validation_loss(self.model, self.val, options.batch_size, self.pad_id, self.device)
                self.emit(Validated(step=step, val_loss=val_loss))
            if step == self.steps or step % max(1, options.save_every) == 0:
                self._save(step, stream, per_epoch)
        return Outcome("finished", step, loss, val_loss)

    def _save(self, step: int, stream: int, per_epoch: int) -> Path:
        epoch, position = divmod(stream, per_epoch)
        path = checkpoint.save(
            self.run_dir, TrainState(step, epoch, position), self.model, self.optimizer, self.scheduler
        )
        self.emit(Checkpointed(step=step, path=path))
        return path

    def _stopped(self, step: int, stream: int, per_epoch: int, loss: float | None, val_loss: float | None) -> Outcome:
        path = self._save(step, stream, per_epoch)
        self.emit(Stopped(step=step, checkpoint=path))
        return Outcome("stopped", step, loss, val_loss)
