"""The optimizers of the built-in trainer: ``TrainConfig.optimizer`` names one of them.

An entry maps a name to a factory ``(params, config, fused) -> torch.optim.Optimizer``; it
reads what it needs from the :class:`~prunekit.interfaces.TrainConfig` (``lr`` is the base
rate; the trainer sets every group's ``lr`` at every step from the schedule). ``fused`` is true
on CUDA, where torch's fused kernels exist for SGD and AdamW.

A plugin offers another optimizer by subclassing the trainer with a larger table, under its
own trainer name (masks are enforced on every state tensor of the parameter's shape, whatever
the optimizer)::

    @attrs.frozen(kw_only=True)
    class LionTrainer(SGDTrainer):
        name: ClassVar[str] = "lion_trainer"
        description: ClassVar[str] = "the sgd trainer, plus Lion"
        optimizers: ClassVar[Mapping[str, OptimizerFactory]] = {
            **OPTIMIZERS,
            "lion": lambda params, config, fused: Lion(params, lr=config.lr, betas=config.betas),
        }

then ``trainer = "lion_trainer"`` and ``[protocol] optimizer = "lion"`` in a suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import torch

from prunekit import TrainConfig

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], TrainConfig, bool], torch.optim.Optimizer]


def sgd(params: Iterable[torch.nn.Parameter], config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """SGD with ``momentum`` (heavy ball, or ``nesterov``) and L2 ``weight_decay``."""
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
        fused=fused or None,
        foreach=None if fused else True,
    )


def adamw(params: Iterable[torch.nn.Parameter], config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter) with ``betas`` and decoupled ``weight_decay``."""
    beta1, beta2 = config.betas
    return torch.optim.AdamW(
        params,
        lr=config.lr,
        betas=(beta1, beta2),
        weight_decay=config.weight_decay,
        fused=fused or None,
        foreach=None if fused else True,
    )


OPTIMIZERS: Mapping[str, OptimizerFactory] = MappingProxyType({"sgd": sgd, "adamw": adamw})

# Optimizers whose update of a weight reads only that weight, its gradient and its own state:
# a pruned gradient cannot reach a kept weight, so the trainer need not zero pruned gradients
# before their step (unless it clips the global norm). Any other optimizer gets them zeroed.
ELEMENTWISE: frozenset[OptimizerFactory] = frozenset({sgd, adamw})
