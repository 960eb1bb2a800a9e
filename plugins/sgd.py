"""The ``sgd`` trainer: SGD with momentum / Nesterov, weight decay, multistep or cosine
learning-rate schedule with optional linear warm-up, masks enforced after every step,
final- and best-epoch accuracy, snapshots for rewinding, checkpoint and resume.

On CUDA it trains with bf16 autocast and channels_last. Metrics are accumulated on the device
and read once per epoch, so there is no host-device synchronisation per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from prunekit.data import ArrayData, DataBundle, augment_batch, iterate_batches, make_generator
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import TrainConfig, Trainer, TrainResult
from prunekit.masks import Masks


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


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@attrs.frozen(kw_only=True)
class SGDTrainer(Trainer):
    """SGD (momentum, Nesterov, weight decay) with the paper's CIFAR protocol by default."""

    name: ClassVar[str] = "sgd"
    description: ClassVar[str] = "SGD + momentum, multistep/cosine LR, masks enforced every step"

    eval_batch_size: int = 1024
    compile: bool = False  # torch.compile the model for training (off until measured per model)
    data_on_device: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "always", "never"))
    )  # keep the whole split on the accelerator (auto: when it fits in half the free memory)

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

    def evaluate(self, model: nn.Module, data: DataBundle, *, device: torch.device | str = "cpu") -> tuple[float, float]:
        device = torch.device(device)
        test = self._place(data.test, device)
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        with torch.no_grad(), _autocast(device):
            for start in range(0, len(test), self.eval_batch_size):
                x = data.normalize(test.x[start : start + self.eval_batch_size].to(device, non_blocking=True))
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
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
        snapshot_steps: Sequence[int] = (),
        checkpoint: Path | None = None,
        progress: Callable[[dict[str, float]], None] | None = None,
    ) -> TrainResult:
        device = torch.device(device)
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        train = self._place(train_data if train_data is not None else data.train, device)
        fused = device.type == "cuda"
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
            fused=fused or None,
            foreach=None if fused else True,
        )
        forward = torch.compile(model) if self.compile else model
        enforce = masks.enforcer(model, optimizer) if masks is not None else None
        if enforce is not None:
            enforce()
        generator = make_generator(seed, "train-order")
        steps_per_epoch = max(math.ceil(len(train) / config.batch_size), 1)
        wanted = set(int(s) for s in snapshot_steps)
        snapshots: dict[int, dict[str, torch.Tensor]] = {}
        history: list[dict[str, float]] = []
        start_epoch, step, best = 0, 0, 0.0
        if checkpoint is not None and Path(checkpoint).is_file():
            state = torch.load(checkpoint, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            start_epoch, step, best = state["epoch"], state["step"], state["best"]
            history, snapshots = state["history"], state["snapshots"]
            if enforce is not None:  # optimizer state tensors were replaced: collect them again
                enforce = masks.enforcer(model, optimizer)  # type: ignore[union-attr]
        if 0 in wanted and 0 not in snapshots:
            snapshots[0] = _state(model)

        started = time.perf_counter()
        model.train()
        for epoch in range(start_epoch, config.epochs):
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            for i, (xb, yb) in enumerate(iterate_batches(train, config.batch_size, generator)):
                factor = lr_factor(config, epoch + i / steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
                xb = augment_batch(xb.to(device, non_blocking=True), data.augment, generator)
                yb = yb.to(device, non_blocking=True)
                x = data.normalize(xb)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(device):
                    logits = forward(x)
                    loss = F.cross_entropy(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if enforce is not None:
                    enforce()
                step += 1
                loss_sum += loss.detach() * yb.shape[0]
                correct += (logits.detach().argmax(1) == yb).sum()
                if step in wanted:
                    snapshots[step] = _state(model)
            test_loss, test_acc = self.evaluate(model, data, device=device)
            best = max(best, test_acc)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(loss_sum) / len(train),
                "train_accuracy": float(correct) / len(train),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            history.append(record)
            if checkpoint is not None:
                _save_checkpoint(
                    Path(checkpoint),
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "epoch": epoch + 1,
                        "step": step,
                        "best": best,
                        "history": history,
                        "snapshots": snapshots,
                    },
                )
            if progress is not None:
                progress(record)
        if history:
            final_loss, final_acc = history[-1]["test_loss"], history[-1]["test_accuracy"]
        else:
            final_loss, final_acc = self.evaluate(model, data, device=device)
            best = final_acc
        return TrainResult(
            final_accuracy=final_acc,
            best_accuracy=best,
            final_loss=final_loss,
            history=tuple(history),
            steps=step,
            snapshots=snapshots,
            wall_time=time.perf_counter() - started,
        )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, state: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@hookimpl
def register_trainers(register):  # type: ignore[no-untyped-def]
    register(SGDTrainer)
