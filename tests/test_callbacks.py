"""Training callbacks (prunekit.callbacks) and the trainer contract they belong to: a trainer
written against the facade alone passes the conformance kit with the default ``evaluate``;
the batched trainer runs each member's own callbacks and refuses checkpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunekit import (
    ArrayData,
    Checkpoint,
    DataBundle,
    Masks,
    Progress,
    PrunekitError,
    Snapshots,
    TrainCallback,
    TrainConfig,
    Trainer,
    TrainResult,
    TrainRun,
)
from prunekit.testing import check_trainer, tiny_data, tiny_mlp

CONFIG = TrainConfig(epochs=2, batch_size=16, lr=0.05, lr_schedule="constant")


class PlainTrainer(Trainer):
    """The smallest trainer the contract allows: SGD with momentum at a constant learning rate,
    callbacks, checkpoint and resume, and the default ``evaluate``."""

    name: ClassVar[str] = "plain"
    description: ClassVar[str] = "plain SGD (tests)"

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
        if start_step:
            raise PrunekitError("the plain trainer starts at step 0 only")
        device = torch.device(device)
        model.to(device)
        train = (train_data if train_data is not None else data.train).to(device)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        enforce = masks.enforcer(model, optimizer) if masks is not None else None
        if enforce is not None:
            enforce()
        order = torch.Generator().manual_seed(seed)
        history: list[dict[str, float]] = []
        best = [0.0]

        def resume_state() -> dict[str, Any]:
            return {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": order.get_state(), "step": run.step, "epoch": run.epoch,
                "best": best[0], "history": history, "snapshots": run.snapshots,
            }  # fmt: skip

        run = TrainRun(
            step=0, epoch=0, state=lambda: {k: v.detach().clone() for k, v in model.state_dict().items()},
            resume_state=resume_state,
        )  # fmt: skip
        checkpoint = Checkpoint.among(callbacks)
        state = checkpoint.load(device) if checkpoint is not None else None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            order.set_state(state["generator"])
            run.step, run.epoch, best[0] = state["step"], state["epoch"], state["best"]
            history, run.snapshots = state["history"], state["snapshots"]
        for callback in callbacks:
            callback.on_step(run)
        model.train()
        for epoch in range(run.epoch, config.epochs):
            perm = torch.randperm(len(train), generator=order).to(device)
            for start in range(0, len(train), config.batch_size):
                idx = perm[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(data.normalize(train.x[idx])), train.y[idx]).backward()
                optimizer.step()
                if enforce is not None:
                    enforce()
                run.step += 1
                for callback in callbacks:
                    callback.on_step(run)
            loss, accuracy = self.evaluate(model, data, device=device)
            best[0] = max(best[0], accuracy)
            record = {"epoch": epoch + 1, "step": run.step, "test_loss": loss, "test_accuracy": accuracy}
            history.append(record)
            run.epoch = epoch + 1
            for callback in callbacks:
                callback.on_epoch_end(run, record)
        if history:
            loss, accuracy = history[-1]["test_loss"], history[-1]["test_accuracy"]
        else:
            loss, accuracy = self.evaluate(model, data, device=device)
            best[0] = accuracy
        return TrainResult(
            final_accuracy=accuracy, best_accuracy=best[0], final_loss=loss, history=tuple(history),
            steps=run.step, snapshots=run.snapshots,
        )  # fmt: skip


def test_a_trainer_on_the_facade_alone_passes_the_kit() -> None:
    """A trainer that implements only ``fit`` (the default ``evaluate``) and runs its callbacks
    passes check_trainer: snapshots, progress, checkpoint and resume, safe loading."""
    check_trainer(PlainTrainer)


def test_the_default_evaluate_is_the_test_accuracy_and_keeps_the_mode() -> None:
    """Trainer.evaluate gives the mean cross-entropy and accuracy of the model on the test split,
    restores the model's train mode, and agrees with the sgd trainer's own evaluate."""
    from prunekit_plugins.sgd import SGDTrainer

    data, model = tiny_data(), tiny_mlp()
    PlainTrainer().fit(model, data, CONFIG)
    model.train()
    loss, accuracy = PlainTrainer().evaluate(model, data)
    assert model.training
    with torch.no_grad():
        logits = model.eval()(data.normalize(data.test.x))
    assert accuracy == int((logits.argmax(1) == data.test.y).sum()) / len(data.test)
    assert accuracy > 1 / 3  # it trained (chance is a third)
    assert loss == pytest.approx(float(F.cross_entropy(logits, data.test.y)), rel=1e-6)
    sgd_loss, sgd_accuracy = SGDTrainer().evaluate(model, data)
    assert sgd_accuracy == accuracy and sgd_loss == pytest.approx(loss, rel=1e-6)


def test_checkpoints_name_one_file() -> None:
    """Checkpoint.among finds the one checkpoint among callbacks and refuses two files."""
    a, b = Checkpoint("a.ckpt"), Checkpoint("b.ckpt")
    assert Checkpoint.among([Snapshots([0]), a]) is a
    assert Checkpoint.among([Progress(print)]) is None
    with pytest.raises(PrunekitError, match="resumes from one checkpoint"):
        Checkpoint.among([a, b])


def test_batched_members_run_their_own_callbacks_and_refuse_checkpoints(tmp_path: Path) -> None:
    """fit_many runs callbacks[i] for member i only (its snapshots and epoch records), and a
    Checkpoint among any member's callbacks is one line before training."""
    from prunekit_plugins.batched import fit_many

    data = tiny_data()
    records: list[list[dict[str, float]]] = [[], []]
    models = [tiny_mlp(0), tiny_mlp(1)]
    results = fit_many(
        models, data, CONFIG, seeds=[0, 1],
        callbacks=[[Snapshots([0, 2]), Progress(records[0].append)], [Progress(records[1].append)]],
    )  # fmt: skip
    first, second = results
    assert isinstance(first, TrainResult) and isinstance(second, TrainResult)
    assert sorted(first.snapshots) == [0, 2] and second.snapshots == {}
    assert records == [list(first.history), list(second.history)]
    assert len(records[0]) == CONFIG.epochs and records[0] != records[1]
    before = {k: v.clone() for k, v in models[0].state_dict().items()}
    with pytest.raises(PrunekitError, match="writes no checkpoints") as err:
        fit_many(models, data, CONFIG, seeds=[0, 1], callbacks=[[], [Checkpoint(tmp_path / "x.ckpt")]])
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in models[0].state_dict().items())
    assert not (tmp_path / "x.ckpt").exists()
    assert math.isfinite(first.final_loss)
