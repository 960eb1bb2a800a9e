"""The ``sgd`` trainer: SGD (momentum, Nesterov) or AdamW, multistep or cosine learning-rate
schedule with optional linear warm-up, gradient clipping and accumulation, fp32/bf16/fp16
precision, masks exact after every step, final- and best-epoch accuracy, snapshots for
rewinding, late rewinding that continues the schedule, checkpoint and resume.

Precision is part of the protocol (``TrainConfig.precision``, fp32 by default on every
device): bf16 and fp16 autocast the forward pass (fp16 with a gradient scaler); weights and
optimizer state stay fp32. Convolutional models and image inputs are channels_last on every
device (a layout, not a precision: oneDNN's convolutions on a CPU run about 1.2x faster in it,
measured on ``digits_cnn``, and CUDA's tensor cores want it). Metrics and the divergence flag are accumulated on the device and read once per
epoch on CUDA (every step on the CPU, where reading costs nothing), so there is no
host-device synchronisation per step.

The optimizers are a table (:mod:`prunekit_plugins.optimizers`); a plugin adds one by
subclassing :class:`SGDTrainer` with a larger ``optimizers`` table under its own name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from prunekit import (
    ArrayData,
    Checkpoint,
    DataBundle,
    DivergedError,
    Masks,
    PrunekitError,
    TrainCallback,
    TrainConfig,
    Trainer,
    TrainResult,
    TrainRun,
    hookimpl,
)
from prunekit.data import augment_batch, iterate_batches, make_generator
from prunekit_plugins.optimizers import ELEMENTWISE, OPTIMIZERS, OptimizerFactory

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def lr_factor(config: TrainConfig, epoch_progress: float) -> float:
    """Learning-rate multiplier at a (fractional) epoch: warm-up, then the schedule."""
    if config.warmup_epochs and epoch_progress < config.warmup_epochs:
        return (epoch_progress + 1e-12) / config.warmup_epochs
    if config.lr_schedule == "constant" or config.epochs == 0:
        return 1.0
    if config.lr_schedule == "cosine":
        span = max(config.epochs - config.warmup_epochs, 1)
        t = min(max(epoch_progress - config.warmup_epochs, 0.0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    passed = sum(1 for m in config.milestones if epoch_progress >= round(m * config.epochs))
    return config.gamma**passed


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's context for ``precision``: nothing for fp32, else autocast."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Divergence:
    """The first step whose loss was not finite, tracked on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.int64, device=device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        bad = (self.first < 0) & ~torch.isfinite(loss)
        self.first = torch.where(bad, step, self.first)

    def check(self, model: nn.Module, step: int, steps_per_epoch: int, *, weights: bool) -> None:
        """Raise :class:`DivergedError` for a recorded non-finite loss or, with ``weights``,
        for non-finite weights after ``step``."""
        first = int(self.first)
        what = "the loss is not finite (NaN or inf)"
        if first < 0 and weights:
            params = [p.detach() for p in model.parameters()]
            if params and not bool(torch.stack(torch._foreach_norm(params)).isfinite().all()):
                first, what = step, "the weights are not finite (NaN or inf)"
        if first >= 0:
            epoch = (first - 1) // steps_per_epoch + 1
            raise DivergedError(
                f"training diverged at step {first} (epoch {epoch}): {what}; lower the learning "
                "rate, clip gradients (grad_clip_norm) or train in fp32",
                step=first,
                epoch=epoch,
            )


@attrs.frozen(kw_only=True)
class SGDTrainer(Trainer):
    """SGD or AdamW with the paper's CIFAR protocol by default (see :class:`TrainConfig`)."""

    name: ClassVar[str] = "sgd"
    description: ClassVar[str] = (
        "SGD (momentum/Nesterov) or AdamW, multistep/cosine LR, clipping, accumulation, "
        "fp32/bf16/fp16; masks exact every step"
    )
    optimizers: ClassVar[Mapping[str, OptimizerFactory]] = OPTIMIZERS

    eval_batch_size: int = 1024
    compile: bool = False  # torch.compile the model for training (off until measured per model)
    data_on_device: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "always", "never"))
    )  # keep the whole split on the accelerator (auto: when it fits in half the free memory)
    # train convolutional models and image batches in channels_last (a layout: the result is the
    # same up to float summation order, so it is no part of a result's identity)
    channels_last: bool = attrs.field(default=True, eq=False)

    def validate(self, config: TrainConfig) -> None:
        if config.optimizer not in self.optimizers:
            raise PrunekitError(
                f"trainer {self.name!r} has no optimizer {config.optimizer!r}; it offers "
                f"{', '.join(sorted(self.optimizers))} (a plugin adds others with its own trainer)"
            )

    def _place(self, data: ArrayData, device: torch.device) -> ArrayData:
        """The split on ``device`` when it fits (or is asked), else pinned host memory; batches
        are then moved one by one."""
        if device.type != "cuda" or self.data_on_device == "always":
            return data.to(device)
        if self.data_on_device == "auto":
            free, _ = torch.cuda.mem_get_info(device)
            size = data.x.numel() * data.x.element_size() + data.y.numel() * 8
            if size < free // 2:
                return data.to(device)
        cpu = data.to("cpu")
        return ArrayData(x=cpu.x.pin_memory(), y=cpu.y.pin_memory())

    def evaluate(
        self,
        model: nn.Module,
        data: DataBundle,
        *,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ) -> tuple[float, float]:
        device = torch.device(device)
        test = self._place(data.test, device)
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        with torch.no_grad(), autocast(device, precision):
            for start in range(0, len(test), self.eval_batch_size):
                x = data.normalize(test.x[start : start + self.eval_batch_size].to(device, non_blocking=True))
                x = _layout(x) if self.channels_last else x
                y = test.y[start : start + self.eval_batch_size].to(device, non_blocking=True)
                logits = model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
        model.train(was_training)
        n = max(len(test), 1)
        return float(loss_sum) / n, float(correct) / n

    def fit(
        self,
        model: nn.Module,
        data: DataBundle,
        config: TrainConfig,
        *,
        masks: Masks | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        train_data: ArrayData | None = None,
        callbacks: Sequence[TrainCallback] = (),
        start_step: int = 0,
    ) -> TrainResult:
        """Train in channels_last (when set) and hand the model back in the layout it came in
        (so code that views its weights flat keeps working)."""
        with _training_layout(model, self.channels_last):
            self.validate(config)
            device = torch.device(device)
            source = train_data if train_data is not None else data.train
            steps_per_epoch = max(math.ceil(len(source) / config.batch_size), 1)
            total_steps = steps_per_epoch * config.epochs
            if not 0 <= start_step <= total_steps:
                raise PrunekitError(
                    f"start_step {start_step} lies outside 0..{total_steps} (the protocol's "
                    f"{config.epochs} epochs of {steps_per_epoch} steps)"
                )
            model.to(device)
            train = self._place(source, device)
            factory = self.optimizers[config.optimizer]
            optimizer = factory(model.parameters(), config, device.type == "cuda")
            scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
            forward = torch.compile(model) if self.compile else model
            enforce = masks.enforcer(model, optimizer) if masks is not None else None
            if enforce is not None:
                enforce()
            # pruned gradients must not count in a clipped norm nor reach a coupled update
            mask_gradients = enforce is not None and (config.grad_clip_norm > 0 or factory not in ELEMENTWISE)
            generator = make_generator(seed, "train-order")
            snapshots: dict[int, dict[str, torch.Tensor]] = {}
            history: list[dict[str, float]] = []
            start_epoch, skip = divmod(start_step, steps_per_epoch)
            step, best = start_step, 0.0
            run = json.dumps(
                {
                    "config": attrs.asdict(config),
                    "masks": masks.content_hash() if masks is not None else None,
                    "seed": seed,
                    "start_step": start_step,
                },
                sort_keys=True,
            )
            checkpoint = Checkpoint.among(callbacks)
            state = checkpoint.load(device) if checkpoint is not None else None
            if checkpoint is not None and state is not None:
                if state.get("run") != run:
                    raise PrunekitError(
                        f"the training checkpoint {checkpoint.path} belongs to another run (protocol, "
                        "masks, seed or start step differ); delete it or give this run its own path"
                    )
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"])
                generator.set_state(state["generator"])
                start_epoch, step, best, skip = state["epoch"], state["step"], state["best"], 0
                history, snapshots = state["history"], state["snapshots"]

            def resume_state() -> dict[str, Any]:
                return {
                    "run": run,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": current.epoch,
                    "step": step,
                    "best": best,
                    "history": history,
                    "snapshots": current.snapshots,
                }

            current = TrainRun(
                step=step, epoch=start_epoch, snapshots=snapshots, state=lambda: _state(model),
                resume_state=resume_state,
            )  # fmt: skip
            for callback in callbacks:
                callback.on_step(current)

            divergence = _Divergence(device)
            check_every_step = device.type == "cpu"
            chunks = config.accumulation_steps
            started = time.perf_counter()
            model.train()
            for epoch in range(start_epoch, config.epochs):
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device, dtype=torch.int64)
                seen = 0
                batches = iterate_batches(train, config.batch_size, generator)
                for i, (xb, yb) in enumerate(itertools.islice(batches, skip, None), start=skip):
                    factor = lr_factor(config, epoch + i / steps_per_epoch)
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * factor
                    xb = augment_batch(xb.to(device, non_blocking=True), data.augment, generator)
                    yb = yb.to(device, non_blocking=True)
                    x = data.normalize(xb)
                    x = _layout(x) if self.channels_last else x
                    optimizer.zero_grad(set_to_none=True)
                    loss = self._accumulate(forward, x, yb, chunks, config.precision, device, scaler, correct)
                    if mask_gradients:
                        enforce.gradients()  # type: ignore[union-attr]
                    if config.grad_clip_norm > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm, foreach=True)
                    scaler.step(optimizer)
                    scaler.update()
                    if enforce is not None:
                        enforce()
                    step += 1
                    seen += yb.shape[0]
                    loss_sum += loss * yb.shape[0]
                    divergence.record(loss, step)
                    if check_every_step:
                        divergence.check(model, step, steps_per_epoch, weights=False)
                    if callbacks:
                        current.step = step
                        for callback in callbacks:
                            callback.on_step(current)
                skip = 0
                divergence.check(model, step, steps_per_epoch, weights=True)
                test_loss, test_acc = self.evaluate(model, data, device=device, precision=config.precision)
                best = max(best, test_acc)
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": float(loss_sum) / max(seen, 1),
                    "train_accuracy": float(correct) / max(seen, 1),
                    "test_loss": test_loss,
                    "test_accuracy": test_acc,
                }
                history.append(record)
                current.step, current.epoch = step, epoch + 1
                for callback in callbacks:
                    callback.on_epoch_end(current, record)
            if history:
                final_loss, final_acc = history[-1]["test_loss"], history[-1]["test_accuracy"]
            else:
                final_loss, final_acc = self.evaluate(model, data, device=device, precision=config.precision)
                best = final_acc
            return TrainResult(
                final_accuracy=final_acc,
                best_accuracy=best,
                final_loss=final_loss,
                history=tuple(history),
                steps=step,
                snapshots=current.snapshots,
                wall_time=time.perf_counter() - started,
            )

    @staticmethod
    def _accumulate(
        forward: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        chunks: int,
        precision: str,
        device: torch.device,
        scaler: torch.amp.GradScaler,
        correct: torch.Tensor,
    ) -> torch.Tensor:
        """Forward and backward of one batch in ``chunks`` micro-batches (gradients summed, each
        weighted by its share of the batch); returns the batch's mean loss, detached."""
        if chunks == 1:
            with autocast(device, precision):
                logits = forward(x)
                loss = F.cross_entropy(logits.float(), y)
            scaler.scale(loss).backward()
            correct += (logits.detach().argmax(1) == y).sum()
            return loss.detach()
        total = torch.zeros((), device=device)
        n = y.shape[0]
        for xc, yc in zip(x.tensor_split(chunks), y.tensor_split(chunks)):
            if yc.shape[0] == 0:  # a last batch shorter than the number of chunks
                continue
            with autocast(device, precision):
                logits = forward(xc)
                loss = F.cross_entropy(logits.float(), yc) * (yc.shape[0] / n)
            scaler.scale(loss).backward()
            correct += (logits.detach().argmax(1) == yc).sum()
            total += loss.detach()
        return total


@contextlib.contextmanager
def _training_layout(model: nn.Module, channels_last: bool) -> Iterator[None]:
    """The model in channels_last inside the block (4-d parameters only; others unchanged), back
    in the contiguous layout afterwards when it came in that way."""
    contiguous = all(p.is_contiguous() for p in model.parameters())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if contiguous:
            model.to(memory_format=torch.contiguous_format)


def _layout(x: torch.Tensor) -> torch.Tensor:
    """A batch of images (N, C, H, W) as channels_last; other inputs as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@hookimpl
def register_trainers(register):  # type: ignore[no-untyped-def]
    register(SGDTrainer)

