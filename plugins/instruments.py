"""The built-in instruments (:mod:`prunekit.instruments`): the neighbouring papers' questions.

* ``instability`` — linear mode connectivity (Frankle, Dziugaite, Roy, Carbin, ICML 2020): the
  error barrier between two copies of the ticket trained with different SGD noise, "stable"
  under a threshold (2 points), and the rewinding sweep (the barrier against the rewinding
  step k).
* ``gradient_flow`` — Evci, Ioannou, Keskin, Dauphin (AAAI 2022): gradient norm at
  initialisation for the sparse net and its dense counterpart, over the first steps of
  training, and the distance and linear-path barrier to the pruning solution.
* ``winning_ticket`` — Ma et al. (NeurIPS 2021): the ticket against its mask's random
  re-initialisation and a random mask with its layer ratios, under the same budget, at each
  learning rate of a sweep.
* ``mask_stability`` — the kept positions (packed) and a sample of the round-1 scores, from
  which the report computes Jaccard overlaps across seeds, checks and methods, and Spearman
  correlations of the scores across seeds.

Errors are fractions in [0, 1] as the trainers report accuracies (the report shows points);
a barrier's threshold is a fraction too (0.02 = 2 points).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Literal

import attrs
import torch

from prunekit import (
    Curve,
    Instrument,
    InstrumentContext,
    Masks,
    Measurement,
    Method,
    PrunekitError,
    ScoringContext,
    TicketContext,
    digest,
    hookimpl,
    instantiate,
    prunable_layers,
)
from prunekit.data import make_generator, scoring_batches
from prunekit.instruments import (
    Cells,
    copy_model,
    derived_seed,
    error_barrier,
    error_path,
    flat_mask,
    gradient_norm,
    interpolation_barrier,
    masked_state,
    pack_bits,
    pack_floats,
    probe_batches,
    rewind_step,
    state_of,
    step_gradient_norms,
    train_copy,
    weight_distance,
    with_unpruned,
)
from prunekit.scoring import run_scorer

FRANKLE2020 = "Frankle, Dziugaite, Roy, Carbin. Linear Mode Connectivity and the Lottery Ticket Hypothesis. ICML 2020."
EVCI2022 = (
    "Evci, Ioannou, Keskin, Dauphin. Gradient Flow in Sparse Neural Networks and How Lottery "
    "Tickets Win. AAAI 2022."
)
MA2021 = (
    "Ma et al. Sanity Checks for Lottery Tickets: Does Your Winning Ticket Really Win the Jackpot? "
    "NeurIPS 2021."
)
STABLE_BARRIER = 0.02  # Frankle et al. 2020: stable when the error barrier is below 2 points


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _positive_floats(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(not (math.isfinite(v) and v > 0) for v in value):
        raise ValueError(f"{attribute.name!r} must be numbers > 0, got {list(value)}")


def _non_negative_floats(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(not (math.isfinite(v) and v >= 0) for v in value):
        raise ValueError(f"{attribute.name!r} must be numbers >= 0, got {list(value)}")


def _one_of(*values: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in values:
            raise ValueError(f"{attribute.name!r} must be one of {', '.join(values)}; got {value!r}")

    return check


_ge = attrs.validators.ge
_gt = attrs.validators.gt


# ----------------------------------------------------------------------------- instability
@attrs.frozen(kw_only=True)
class Instability(Instrument):
    """Linear mode connectivity of the ticket (Frankle et al. 2020).

    The cell's own run is copy A; copy B trains from the same ticket (same mask, same weights,
    same protocol and start step) with other SGD noise: data order and augmentation from
    ``noise_seed`` (default: drawn from the run seed). The test error is measured at ``points``
    evenly spaced points of the linear path between the two trained copies, BatchNorm
    statistics recomputed at each point from ``bn_samples`` training images. ``barrier`` is the
    highest error on the path minus the mean of its two ends; the ticket is ``stable`` when the
    barrier is below ``threshold`` (0.02: 2 points, the paper's).

    ``rewind_points`` runs the paper's rewinding sweep: for each point k (a fraction of training
    below 1, else a step, as a method's ``rewind_point``), two copies start from the clean dense
    run's θ_k under this cell's mask and train with the two seeds (the schedule continuing from
    k, as in the paper, or restarting: ``rewind_schedule``); the barriers over k form the curve
    ``barrier_vs_rewind_step``. Each point costs two trainings.
    """

    name: ClassVar[str] = "instability"
    description: ClassVar[str] = (
        "linear mode connectivity: error barrier between two copies trained with other SGD noise; rewinding sweep"
    )
    citation: ClassVar[str] = FRANKLE2020
    cells: ClassVar[Cells] = "clean"

    points: int = attrs.field(default=11, validator=_ge(2))
    threshold: float = attrs.field(default=STABLE_BARRIER, converter=float, validator=_gt(0))
    bn_samples: int = attrs.field(default=2048, validator=_gt(0))
    noise_seed: int | None = attrs.field(
        default=None, validator=attrs.validators.optional([attrs.validators.instance_of(int), _ge(0)])
    )
    rewind_points: tuple[float, ...] = attrs.field(default=(), converter=_floats, validator=_non_negative_floats)
    rewind_schedule: Literal["continue", "restart"] = attrs.field(
        default="continue", validator=_one_of("continue", "restart")
    )

    def _barrier(self, ctx: InstrumentContext, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[list[float], list[float], float]:
        alphas, errors = error_path(ctx, a, b, points=self.points, bn_samples=self.bn_samples)
        return alphas, errors, error_barrier(errors)

    def after_training(self, ctx: InstrumentContext, before: Any) -> Measurement:
        seed_b = self.noise_seed if self.noise_seed is not None else derived_seed(ctx.generator("noise"))
        if seed_b == ctx.seed:
            raise PrunekitError(f"instability's noise_seed {seed_b} is the cell's own seed; choose another")
        notes: list[str] = []
        values: dict[str, Any] = {"threshold": self.threshold, "noise_seed": seed_b}
        curves: dict[str, Curve] = {}
        copy_b, result_b, why = train_copy(ctx, ctx.ticket, seed=seed_b)
        if result_b is None:
            notes.append(f"the second copy diverged: {why}")
            values.update(barrier=None, stable=None)
        else:
            alphas, errors, barrier = self._barrier(ctx, state_of(ctx.model), state_of(copy_b))
            values.update(
                barrier=barrier, stable=barrier < self.threshold, error_a=errors[0], error_b=errors[-1],
                max_error=max(errors), copy_b_accuracy=result_b.final_accuracy,
            )  # fmt: skip
            curves["error_path"] = Curve(
                x=alphas, y=errors, x_label="interpolation α (0: the cell's run, 1: the second copy)", y_label="test error"
            )
        if self.rewind_points:
            total = ctx.steps_per_epoch() * ctx.protocol.epochs
            ks = sorted({rewind_step(p, total) for p in self.rewind_points})
            dense = ctx.dense(ks)
            barriers: list[float | None] = []
            for k in ks:
                start = masked_state(dense.at(k), ctx.masks)
                step = k if self.rewind_schedule == "continue" else 0
                trained = [train_copy(ctx, start, seed=s, start_step=step) for s in (ctx.seed, seed_b)]
                failed = [w for _, r, w in trained if r is None]
                if failed:
                    notes.append(f"rewinding step {k}: a copy diverged ({failed[0]})")
                    barriers.append(None)
                    continue
                *_, barrier = self._barrier(ctx, state_of(trained[0][0]), state_of(trained[1][0]))
                barriers.append(barrier)
                values[f"barrier_at_step_{k}"] = barrier
            curves["barrier_vs_rewind_step"] = Curve(
                x=ks, y=barriers, x_label="rewinding step k", y_label="error barrier"
            )
            stable = [k for k, b in zip(ks, barriers) if b is not None and b < self.threshold]
            values["first_stable_step"] = stable[0] if stable else None
        return Measurement(values=values, curves=curves, notes=tuple(notes))


# --------------------------------------------------------------------------- gradient flow
def _subsample(values: list[float], limit: int) -> tuple[list[int], list[float]]:
    """(1-based steps, values) with at most ``limit`` evenly spaced points, first and last kept."""
    n = len(values)
    if n <= limit:
        return list(range(1, n + 1)), values
    index = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [i + 1 for i in index], [values[i] for i in index]


@attrs.frozen(kw_only=True)
class GradientFlow(Instrument):
    """Gradient flow of the ticket (Evci et al. 2022).

    * ``grad_norm_init``: the L2 norm of the loss gradient at the ticket, over every trainable
      parameter with pruned positions excluded, on a fixed seeded probe of ``probe_samples``
      training images (the same for every method of a seed); ``grad_norm_init_dense``: the
      same for its dense counterpart (the ticket's weights without the mask: θ₀ for initial
      tickets, θ_k or θ_T for rewound ones); ``grad_norm_init_ratio``: sparse / dense.
    * the curve ``grad_norm`` over the first ``epochs`` epochs of the final training: the norm
      of the minibatch gradient the optimizer steps with, at every step (a copy retraces the
      cell's run with its seed; at most ``max_points`` points are kept); ``grad_norm_mean``: its
      mean. The dense network's curve is the ``dense`` cell's.
    * with ``solution``: the pruning solution is the clean dense run's trained weights θ_T under
      the mask (what lottery tickets prune); ``distance_to_solution`` is the L2 distance of the
      trained ticket's prunable weights to it (``distance_start_to_solution``: of the ticket
      before training), and ``solution_barrier`` the barrier of the linear path between the
      two (``points`` points, BatchNorm recomputed): the highest error above the straight line
      between the ends' errors (:func:`~prunekit.instruments.interpolation_barrier`, since the
      solution, pruned and not retrained, has a higher error than the trained ticket);
      ``same_basin`` when it is below ``threshold``; ``solution_error``: the solution's own
      test error. This needs the dense run of the seed (trained once, cached).
    """

    name: ClassVar[str] = "gradient_flow"
    description: ClassVar[str] = (
        "gradient norm at init (sparse vs dense) and over the first steps; distance and barrier to the pruning solution"
    )
    citation: ClassVar[str] = EVCI2022
    cells: ClassVar[Cells] = "all"

    epochs: float = attrs.field(default=1.0, converter=float, validator=_ge(0))
    probe_samples: int = attrs.field(default=512, validator=_gt(0))
    max_points: int = attrs.field(default=200, validator=_ge(2))
    solution: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    points: int = attrs.field(default=11, validator=_ge(2))
    bn_samples: int = attrs.field(default=2048, validator=_gt(0))
    threshold: float = attrs.field(default=STABLE_BARRIER, converter=float, validator=_gt(0))

    def before_training(self, ctx: InstrumentContext) -> dict[str, float]:
        probe = probe_batches(ctx, self.probe_samples)
        sparse = gradient_norm(ctx.model, probe, ctx.masks)
        dense = gradient_norm(copy_model(ctx.model, with_unpruned(ctx.ticket, ctx.unpruned)), probe)
        return {"sparse": sparse, "dense": dense}

    def after_training(self, ctx: InstrumentContext, before: dict[str, float]) -> Measurement:
        values: dict[str, Any] = {
            "grad_norm_init": before["sparse"],
            "grad_norm_init_dense": before["dense"],
            "grad_norm_init_ratio": before["sparse"] / before["dense"] if before["dense"] > 0 else None,
        }
        curves: dict[str, Curve] = {}
        notes: list[str] = []
        steps = round(self.epochs * ctx.steps_per_epoch())
        if steps > 0:
            norms, note = step_gradient_norms(ctx, ctx.ticket, steps=steps)
            if note:
                notes.append(note)
            if norms:
                xs, ys = _subsample(norms, self.max_points)
                curves["grad_norm"] = Curve(x=xs, y=ys, x_label="step of the final training", y_label="gradient norm")
                values["grad_norm_mean"] = sum(norms) / len(norms)
                values["grad_norm_steps"] = len(norms)
        if self.solution:
            dense = ctx.dense(())
            solution = masked_state(dense.final, ctx.masks)
            trained = state_of(ctx.model)
            names = list(ctx.masks)
            zero = {n: torch.zeros_like(solution[n]) for n in names}
            values["distance_to_solution"] = weight_distance(trained, solution, names)
            values["distance_start_to_solution"] = weight_distance(ctx.ticket, solution, names)
            values["solution_norm"] = weight_distance(solution, zero, names)
            alphas, errors = error_path(ctx, trained, solution, points=self.points, bn_samples=self.bn_samples)
            barrier = interpolation_barrier(alphas, errors)
            values.update(
                solution_barrier=barrier, same_basin=barrier < self.threshold, solution_error=errors[-1],
                dense_accuracy=dense.final_accuracy,
            )  # fmt: skip
            curves["solution_path"] = Curve(
                x=alphas, y=errors, x_label="α (0: the trained ticket, 1: the pruning solution)", y_label="test error"
            )
        return Measurement(values=values, curves=curves, notes=tuple(notes))


# -------------------------------------------------------------------------- winning ticket
@attrs.frozen(kw_only=True)
class WinningTicket(Instrument):
    """The winning-ticket criteria of Ma et al. 2021.

    A ticket wins only if it beats, under the same training budget (protocol, start step, data
    order: the cell's seed) and the same learning rate,

    * ``reinit``: its mask on a random re-initialisation of the whole network (a fresh
      initialisation from a seed drawn from the run seed), and
    * ``random_mask``: a random mask with its layer ratios (each layer's mask permuted at
      random, as the ``layerwise_rearrange`` check does; newly kept positions take the weights
      the ticket was cut from).

    For each learning rate of ``learning_rates`` (empty: the protocol's own) the two baselines
    train, and the ticket too when the rate is not the protocol's (the cell's run is the ticket
    at its own rate). The curves ``ticket_vs_lr``, ``reinit_vs_lr`` and ``random_mask_vs_lr``
    hold the final accuracies; the report pairs them across seeds (paired t tests of
    :mod:`prunekit.bench.stats`) for its "winning ticket?" column. Two trainings per rate, three
    at rates other than the protocol's.
    """

    name: ClassVar[str] = "winning_ticket"
    description: ClassVar[str] = (
        "Ma et al.: the ticket against its mask re-initialised and a random mask with its layer ratios, per learning rate"
    )
    citation: ClassVar[str] = MA2021
    cells: ClassVar[Cells] = "clean"

    learning_rates: tuple[float, ...] = attrs.field(default=(), converter=_floats, validator=_positive_floats)

    def not_applicable(self, method: Method) -> str | None:
        if method.scorer is None:
            return "the dense network has no mask to test"
        return None

    def after_training(self, ctx: InstrumentContext, before: Any) -> Measurement:
        assert ctx.result is not None
        reinit = masked_state(state_of(ctx.build(derived_seed(ctx.generator("reinit")))), ctx.masks)
        shuffled = copy_model(ctx.model, ctx.ticket)
        unpruned = ctx.unpruned or {n: ctx.ticket[n] for n in ctx.masks}
        rearrange = instantiate("sanity_check", "layerwise_rearrange")
        random_masks: Masks = rearrange.perturb_ticket(
            TicketContext(
                model=shuffled, masks=ctx.masks, unpruned=unpruned, generator=ctx.generator("random_mask"),
                init_model=ctx.build,
            )
        )  # fmt: skip
        random_state = state_of(shuffled)
        rates = self.learning_rates or (ctx.protocol.lr,)
        accuracy: dict[str, list[float | None]] = {"ticket": [], "reinit": [], "random_mask": []}
        notes: list[str] = []
        for lr in rates:
            config = attrs.evolve(ctx.protocol, lr=lr)
            runs = {
                "reinit": (reinit, ctx.masks),
                "random_mask": (random_state, random_masks),
            }
            if lr == ctx.protocol.lr:
                accuracy["ticket"].append(ctx.result.final_accuracy)
            else:
                runs = {"ticket": (dict(ctx.ticket), ctx.masks), **runs}
            for label, (state, masks) in runs.items():
                _, result, why = train_copy(ctx, state, seed=ctx.seed, masks=masks, config=config)
                accuracy[label].append(None if result is None else result.final_accuracy)
                if result is None:
                    notes.append(f"{label} at lr {lr:g} diverged: {why}")
        curves = {
            f"{label}_vs_lr": Curve(x=rates, y=ys, x_label="learning rate", y_label="final test accuracy")
            for label, ys in accuracy.items()
        }
        at = rates.index(ctx.protocol.lr) if ctx.protocol.lr in rates else None
        values: dict[str, Any] = {}
        if at is not None:
            ticket, re, rnd = (accuracy[k][at] for k in ("ticket", "reinit", "random_mask"))
            values = {
                "ticket_accuracy": ticket,
                "reinit_accuracy": re,
                "random_mask_accuracy": rnd,
                "beats_reinit_by": None if ticket is None or re is None else ticket - re,
                "beats_random_mask_by": None if ticket is None or rnd is None else ticket - rnd,
            }
        return Measurement(values=values, curves=curves, notes=tuple(notes))


# -------------------------------------------------------------------------- mask stability
@functools.lru_cache(maxsize=8)
def _positions(layout: str, total: int, count: int, scored: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(mask positions, score positions, exact) of a layout: every position when ``total`` <=
    ``count``, else a seeded sample; the same for every cell of the same layout."""
    perm = torch.randperm(total, generator=make_generator(0, "mask-stability-positions", layout))
    exact = total <= count
    mask_positions = torch.arange(total) if exact else perm[:count].sort().values
    return mask_positions, perm[:scored].sort().values, exact


def layout_key(masks: Masks) -> str:
    """The names and shapes of the masks (cells are compared only when theirs agree)."""
    return digest([[name, list(m.shape)] for name, m in masks.items()], length=16)


@attrs.frozen(kw_only=True)
class MaskStability(Instrument):
    """What the mask is made of, for the report's overlaps across cells.

    Stores the kept positions (packed bits: every prunable position when there are at most
    ``max_positions``, else the same seeded sample of ``max_positions`` positions for every
    cell of the model, so Jaccard overlaps are estimated on it) and, for scored methods on
    clean cells, the method's round-1 scores (at the weights it scores: θ₀, or the clean dense
    run's θ_T for lottery tickets) at ``score_positions`` sampled positions (float32), for the
    Spearman correlation of the scores across seeds. Runs on check cells too (the overlap of
    each checked ticket with its clean ticket).
    """

    name: ClassVar[str] = "mask_stability"
    description: ClassVar[str] = (
        "kept positions and sampled scores: Jaccard overlaps across seeds, checks and methods; Spearman of scores"
    )
    cells: ClassVar[Cells] = "all"

    max_positions: int = attrs.field(default=65536, validator=_gt(0))
    score_positions: int = attrs.field(default=4096, validator=_ge(0))

    def not_applicable(self, method: Method) -> str | None:
        if method.scorer is None:
            return "the dense network keeps every weight"
        return None

    def _sample(self, masks: Masks) -> tuple[str, int, torch.Tensor, torch.Tensor, bool]:
        layout = layout_key(masks)
        total = masks.total()
        positions, scored, exact = _positions(layout, total, self.max_positions, min(self.score_positions, total))
        return layout, total, positions, scored, exact

    def before_training(self, ctx: InstrumentContext) -> dict[str, Any] | None:
        method = ctx.method
        if ctx.spec.check != "none" or method.scorer is None or self.score_positions == 0:
            return None
        if method.pretrain:
            model = copy_model(ctx.model, ctx.dense(()).final)
        else:
            model = copy_model(ctx.model, with_unpruned(ctx.ticket, ctx.unpruned))
        scorer = instantiate("scorer", method.scorer, dict(method.scorer_options))
        layers = tuple(layer for layer in prunable_layers(model) if layer.name in ctx.masks)
        batches = scoring_batches(
            ctx.data, scorer.data_request(model, ctx.data), ctx.seed, ctx.device, ctx.data.train,
            augment=method.scoring_augment,
        )  # fmt: skip
        scoring = ScoringContext(
            layers=layers, masks=Masks.ones(model, [layer.name for layer in layers]), batches=batches,
            input_shape=ctx.data.input_shape, num_classes=ctx.data.num_classes, seed=ctx.seed, device=ctx.device,
        )  # fmt: skip
        scores = run_scorer(scorer, model, scoring)
        flat = torch.cat([scores[name].detach().double().cpu().reshape(-1) for name in ctx.masks])
        *_, scored, _ = self._sample(ctx.masks)
        return {"scores": pack_floats(flat[scored]), "score_positions": int(scored.numel())}

    def after_training(self, ctx: InstrumentContext, before: dict[str, Any] | None) -> Measurement:
        layout, total, positions, _, exact = self._sample(ctx.masks)
        bits = flat_mask(ctx.masks)[positions]
        data: dict[str, Any] = {
            "layout": layout,
            "layers": [[name, int(m.numel())] for name, m in ctx.masks.items()],
            "total": total,
            "positions": int(positions.numel()),
            "exact": exact,
            "mask": pack_bits(bits),
        }
        if before is not None:
            data.update(before)
        values = {
            "sampled_positions": int(positions.numel()),
            "exact": exact,
            "sampled_density": float(bits.float().mean()) if bits.numel() else None,
            "scores_sampled": int(before["score_positions"]) if before else 0,
        }
        return Measurement(values=values, data=data)


@hookimpl
def register_instruments(register):  # type: ignore[no-untyped-def]
    register(Instability)
    register(GradientFlow)
    register(WinningTicket)
    register(MaskStability)
