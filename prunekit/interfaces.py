"""The abstract interfaces a plugin implements, and the Method recipe.

* :class:`Scorer` — per-weight importance scores, higher means keep.
* :class:`RatioSchedule` — how many weights every layer keeps (layer budgets).
* :class:`SanityCheck` — a named perturbation at one stage of the pipeline.
* :class:`Trainer` — fits a masked model and evaluates it.
* :class:`Dataset` — loads a :class:`~prunekit.data.DataBundle`.
* :class:`Method` — a named recipe composing the above.

Scorers, schedules and checks are attrs classes whose fields are their options (keyword-only,
with defaults); the registry holds the class and the pipeline instantiates it with the options
of the method or command line. Every class has a ``name`` and a ``description`` class variable.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, final, get_args

import attrs
import torch
from torch import nn

from prunekit.callbacks import TrainCallback
from prunekit.data import ArrayData, DataBundle
from prunekit.defaults import DEFAULT_OPTIMIZER, DEFAULT_SCHEDULE
from prunekit.identity import noop_field
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks
from prunekit.sentinels import DENSE_METHOD

Family = Literal["initial", "partially_trained", "random", "hybrid", "dense"]
FAMILIES: tuple[str, ...] = get_args(Family)  # the dense reference's family is DENSE_METHOD


# ---------------------------------------------------------------------------------- scoring
@attrs.frozen(kw_only=True)
class DataRequest:
    """The scoring data a scorer wants: ``iterations`` class-balanced batches of
    ``samples_per_class`` samples of every class (gradients are summed over them)."""

    samples_per_class: int = 10
    iterations: int = 1


@attrs.frozen(kw_only=True, eq=False)
class ScoringContext:
    """Everything a scorer may use besides the model.

    ``batches`` are normalised inputs and labels on ``device`` (empty for data-free scorers);
    ``masks`` are the current masks, already applied to the model (all ones in round 1).
    """

    layers: tuple[PrunableLayer, ...]
    masks: Masks
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    input_shape: tuple[int, ...]
    num_classes: int
    seed: int
    device: torch.device

    def generator(self, *salt: object) -> torch.Generator:
        from prunekit.data import make_generator

        return make_generator(self.seed, "scorer", *salt)


class Scorer(abc.ABC):
    """Scores every prunable weight; higher means keep.

    Implement :meth:`score`. Set ``needs_data = False`` for data-free scorers (they get no
    batches and sanity checks on the pruning data do not apply to them) and override
    :meth:`data_request` to change the scoring batch. Set ``random = True`` for a scorer whose
    scores are drawn at random, from neither the weights nor the data (checks that transform
    scores do not apply to it). Checks read these traits, never a scorer's name. A scorer must not change the model's
    weights or masks (work on a copy if it has to), and must return finite float tensors of the
    layers' shapes, on any device.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs_data: ClassVar[bool] = True
    random: ClassVar[bool] = False

    def data_request(self, model: nn.Module, data: DataBundle) -> DataRequest | None:
        return DataRequest() if self.needs_data else None

    @abc.abstractmethod
    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        """Return ``{layer.name: scores}`` for every layer in ``ctx.layers``."""


# -------------------------------------------------------------------------------- schedules
class RatioSchedule(abc.ABC):
    """Layer budgets: how many weights each prunable layer keeps at a target density.

    ``allocate`` returns the keep count of every layer; selection inside a layer is then the
    top-k by score. A global schedule derives the counts from the scores themselves (one
    threshold over all layers); a data-free one ignores them. Counts must lie in
    ``0..layer.numel`` and sum to ``round(density * total)`` within one weight per layer.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def allocate(
        self,
        layers: Sequence[PrunableLayer],
        density: float,
        scores: Mapping[str, torch.Tensor],
    ) -> dict[str, int]:
        """Keep counts per layer name for the overall ``density`` (0 < density <= 1)."""


# ----------------------------------------------------------------------------------- checks
Stage = Literal["pruning_data", "scores", "ticket"]


class SanityCheck(abc.ABC):
    """A perturbation at one or more pipeline stages; a method *passes* when it lowers accuracy.

    ``stages`` says which hooks the pipeline calls (one stage for a plain check; a composed
    check computes the union of its parts' stages):

    * ``pruning_data`` — :meth:`perturb_data` on the data used for pruning (the scoring batch
      and any dense pre-training); final training always uses the clean data;
    * ``scores`` — :meth:`perturb_scores` after the layer budgets were computed from the
      clean scores and before selection inside each layer (so budgets stay the method's own);
      :meth:`scores_before_budgets` moves it before the budgets;
    * ``ticket`` — :meth:`perturb_ticket` on the model and masks after selection and
      rewinding, before the final training.

    ``applies_to`` lists the ticket families it is meaningful for. :meth:`not_applicable`
    derives the rest from the stages: a ``pruning_data`` check does not apply to a method that
    uses no data to prune. A check refusing methods for a reason of its own (e.g. a scorer
    trait) says so in :meth:`refuses`. Everything random is drawn from the given generator
    (the run seed).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    stages: ClassVar[frozenset[Stage]]
    applies_to: ClassVar[frozenset[str]] = frozenset(FAMILIES) - {DENSE_METHOD}

    @final
    def not_applicable(self, method: Method, uses_data: bool) -> str | None:
        """Why this check is meaningless for ``method`` (None when it applies): its family is
        not in ``applies_to``; it acts on the pruning data and ``method`` uses none; or
        :meth:`refuses` gives a reason."""
        if method.family not in self.applies_to:
            return f"{self.name} applies to {', '.join(sorted(self.applies_to))} tickets, not {method.family}"
        if "pruning_data" in self.stages and not uses_data:
            return f"{method.name} does not use data to prune, so {self.name} cannot change it"
        return self.refuses(method)

    def refuses(self, method: Method) -> str | None:
        """A reason of this check's own why it is meaningless for ``method``, a method of a
        family in ``applies_to`` (None, the default: no such reason). Family and data rules
        are the core's (:meth:`not_applicable`): never repeat them here."""
        return None

    def scores_before_budgets(self) -> bool:
        """Whether :meth:`perturb_scores` acts *before* the layer budgets are computed, so the
        method's schedule allocates on the perturbed scores (e.g. a global threshold over
        inverted scores, Frankle et al. 2021). By default it acts after: budgets stay the clean
        method's and only the choice inside each layer changes."""
        return False

    def perturb_data(self, data: ArrayData, num_classes: int, generator: torch.Generator) -> ArrayData:
        return data

    def perturb_scores(
        self, scores: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return scores

    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        """Change ``ticket.model`` in place and/or return new masks."""
        return ticket.masks


@attrs.frozen(kw_only=True, eq=False)
class TicketContext:
    """What a ``ticket`` check gets: the ticket after selection and rewinding.

    ``model`` holds the ticket's weights (pruned positions zero); ``unpruned`` the prunable
    weights the ticket was cut from before masking (θ₀ for initial tickets, θ_k or θ_T for
    rewound ones), so a check that moves the mask can give newly kept positions their own
    values; ``init_model(seed)`` builds a fresh initialisation of the same architecture.
    """

    model: nn.Module
    masks: Masks
    unpruned: Mapping[str, torch.Tensor]
    generator: torch.Generator
    init_model: Callable[[int], nn.Module]


# ---------------------------------------------------------------------------------- trainers
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def _floats(values: Any) -> tuple[float, ...]:
    """A tuple of floats (1 and 1.0 are one value, so they give one result identity)."""
    return tuple(float(v) for v in values)


def _betas(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"'betas' must be two numbers in [0, 1), got {list(value)}")


def _one_of(*values: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A validator whose error is one readable line (attrs' ``in_`` prints its whole state)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in values:
            raise ValueError(f"{attribute.name!r} must be one of {', '.join(values)}; got {value!r}")

    return check


def _accumulation(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 1 or value > instance.batch_size:
        raise ValueError(
            f"'accumulation_steps' must lie in 1..batch_size ({instance.batch_size}), got {value}"
        )


@attrs.frozen(kw_only=True)
class TrainConfig:
    """A training protocol. Defaults are the CIFAR protocol of Su et al. 2020.

    * ``optimizer``: a name the trainer offers (the built-in ``sgd`` trainer: ``sgd`` —
      momentum, ``nesterov``, ``weight_decay`` — and ``adamw`` — ``betas``, decoupled
      ``weight_decay``); ``lr`` and the schedule apply to every optimizer.
    * ``grad_clip_norm``: clip the global gradient norm (of the kept weights) to this value
      before each step; 0 = no clipping.
    * ``accumulation_steps``: split every batch of ``batch_size`` into this many micro-batches
      and sum their gradients before one step (same steps, schedule and data order; less
      memory; BatchNorm sees the smaller batches).
    * ``precision``: ``fp32``, or autocast to ``bf16`` or ``fp16`` (with a gradient scaler) for
      training and evaluation; weights and optimizer state stay fp32.
    """

    epochs: int = attrs.field(default=160, validator=attrs.validators.ge(0))
    batch_size: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    lr: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    momentum: float = attrs.field(default=0.9, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    nesterov: bool = False
    weight_decay: float = attrs.field(default=1e-4, validator=attrs.validators.ge(0))
    lr_schedule: Literal["multistep", "cosine", "constant"] = attrs.field(
        default="multistep", validator=_one_of("multistep", "cosine", "constant")
    )
    milestones: tuple[float, ...] = attrs.field(default=(0.5, 0.75), converter=tuple)  # fractions of epochs
    gamma: float = 0.1
    warmup_epochs: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    optimizer: str = noop_field(DEFAULT_OPTIMIZER, validator=attrs.validators.min_len(1))
    betas: tuple[float, ...] = noop_field((0.9, 0.999), converter=_floats, validator=_betas)
    grad_clip_norm: float = noop_field(0.0, converter=float, validator=attrs.validators.ge(0))
    accumulation_steps: int = noop_field(1, validator=_accumulation)
    precision: Literal["fp32", "bf16", "fp16"] = noop_field("fp32", validator=_one_of(*PRECISIONS))


@attrs.frozen(kw_only=True, eq=False)
class TrainResult:
    """What ``Trainer.fit`` gives back: final- and best-epoch test accuracy, the final test
    loss, one record per epoch, the steps taken, the states :class:`~prunekit.callbacks.Snapshots`
    callbacks kept (by step) and the training's wall time in seconds."""

    final_accuracy: float
    best_accuracy: float
    final_loss: float
    history: tuple[dict[str, float], ...]
    steps: int
    snapshots: Mapping[int, dict[str, torch.Tensor]] = attrs.field(factory=dict)
    wall_time: float = 0.0


class Trainer(abc.ABC):
    """Fits a (masked) model and evaluates it on the test split.

    Must keep pruned weights *and* every optimizer state tensor exactly zero at pruned
    positions after every optimizer step (``masks.enforcer(model, optimizer)``), return final-
    and best-epoch test accuracy, and run ``callbacks`` (:mod:`prunekit.callbacks`) in the
    order given: ``on_step`` before the first step and after every optimizer step,
    ``on_epoch_end`` after each epoch's evaluation, with one :class:`~prunekit.callbacks.TrainRun`
    whose ``snapshots`` become ``TrainResult.snapshots``. With a
    :class:`~prunekit.callbacks.Checkpoint` among them it gives ``TrainRun.resume_state`` and
    resumes from the checkpoint when its file exists (``Checkpoint.load``: tensors and plain
    data only, never unpickling code), refusing one of another run. ``train_data`` replaces
    ``data.train`` (e.g. perturbed pre-training data).

    ``start_step`` = k: the model holds the weights of step k of a run with this protocol (a
    ticket rewound to θ_k); train from step k to the end, the learning-rate schedule continuing
    from step k (OpenLTH; Frankle et al. 2020) instead of restarting. ``TrainRun.step``,
    snapshot steps and ``TrainResult.steps`` count from 0 as in the full run.

    A non-finite loss or weights stop training with :class:`~prunekit.errors.DivergedError`.
    :func:`prunekit.testing.check_trainer` checks this contract. :meth:`validate` says up front
    whether a protocol can run (e.g. an optimizer the trainer does not offer); :meth:`evaluate`
    is the test accuracy the trainer reports (instruments measure copies of the model with it).
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
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
    ) -> TrainResult: ...

    def validate(self, config: TrainConfig) -> None:  # noqa: B027 - optional: accepts every protocol
        """Raise a one-line :class:`~prunekit.errors.PrunekitError` when this trainer cannot
        run ``config``, before any work is done (the default accepts every protocol)."""

    def evaluate(
        self, model: nn.Module, data: DataBundle, *, device: torch.device | str = "cpu"
    ) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of ``model`` on ``data.test``, in eval mode and fp32
        (its train/eval mode is restored after). ``fit``'s final accuracy must be what this
        gives for the trained model (the conformance kit checks it); a trainer that measures
        otherwise (another layout, precision or batch size) overrides it."""
        device = torch.device(device)
        test = data.test.to(device)
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        with torch.no_grad():
            for start in range(0, len(test), 1024):
                x, y = data.normalize(test.x[start : start + 1024]), test.y[start : start + 1024]
                logits = model(x).float()
                loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
        model.train(was_training)
        n = max(len(test), 1)
        return float(loss_sum) / n, float(correct) / n


# ---------------------------------------------------------------------------------- datasets
class Dataset(abc.ABC):
    """Loads a dataset into memory. ``root`` is the user's ``--data-root``; never download
    unless ``download`` is true; when files are missing raise
    :class:`~prunekit.errors.DataNotFoundError` saying where they must be and how to get them."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_root: ClassVar[bool] = True
    default_model: ClassVar[str | None] = None  # a model that suits the data
    default_protocol: ClassVar[TrainConfig | None] = None  # None: the CIFAR protocol

    @abc.abstractmethod
    def load(self, root: Path | None, *, download: bool = False) -> DataBundle: ...


# ----------------------------------------------------------------------------------- methods
Rewind = Literal["init", "step", "trained", "reinit"]


def _options(value: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((value or {}).items()))


def _continues_from_step(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value == "continue" and instance.rewind != "step":
        raise ValueError(
            f"'rewind_schedule' continue needs rewind='step' (a late-rewinding point), got rewind={instance.rewind!r}"
        )


@attrs.frozen(kw_only=True)
class Method:
    """A named pruning recipe.

    * ``scorer`` / ``schedule`` with their options; ``scorer=None`` means no pruning (dense).
    * ``rounds``: scoring rounds at the current weights, density d^(k/rounds) after round k.
    * ``pretrain``: score the weights after dense training (lottery-ticket family) and then
      rewind to ``rewind`` — ``init`` (θ₀), ``step`` (θ_k, k = ``rewind_point``: a fraction of
      training below 1, else a step), ``trained`` (keep θ_T: learning-rate rewinding) or
      ``reinit`` (a fresh initialisation from another seed, Ma et al.).
    * ``prune_fraction``: iterative magnitude pruning — remove this fraction of the remaining
      weights per round, rewind and retrain, until the target density (0: one shot).
    * ``family``: the ticket family, used to decide which sanity checks apply.
    * ``scoring_augment``: draw the scoring batch through the dataset's training augmentation
      (random crop and flip, seeded), as the authors' code of Su et al. 2020 and GraSP does by
      taking it from the augmented training loader; off (un-augmented images, as OpenLTH's
      scoring for Frankle et al. 2021) by default.
    * ``rewind_schedule``: for ``rewind="step"``, whether the final training runs the learning-rate
      schedule from its start (``restart``, the default) or continues it from the rewinding step
      k (``continue``: OpenLTH; Frankle et al. 2020), training the remaining steps only.

    New fields must default to a value that has no effect, so old results stay valid.
    """

    name: str
    description: str
    family: str = attrs.field(validator=attrs.validators.in_(FAMILIES))
    citation: str = ""
    scorer: str | None = None
    scorer_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_options)
    schedule: str = DEFAULT_SCHEDULE
    schedule_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_options)
    rounds: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    pretrain: bool = False
    rewind: Rewind = attrs.field(
        default="init", validator=attrs.validators.in_(get_args(Rewind))
    )
    rewind_point: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    prune_fraction: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )
    scoring_augment: bool = noop_field(False, validator=attrs.validators.instance_of(bool))
    rewind_schedule: Literal["restart", "continue"] = noop_field(
        "restart", validator=[_one_of("restart", "continue"), _continues_from_step]
    )

    def spec(self) -> dict[str, Any]:
        """The recipe as plain data (for fingerprints and metadata)."""
        d = attrs.asdict(self)
        d.pop("description")
        d.pop("citation")
        d["scorer_options"] = dict(self.scorer_options)
        d["schedule_options"] = dict(self.schedule_options)
        return d
