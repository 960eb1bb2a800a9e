"""The conformance kit catches broken plugins, each with a message an author can act on.

Every broken object below breaks one rule of the contract; its test asserts that the kit
fails, names what was wrong and where (the layer, the tiny model, the stage) and says what was
expected. The healthy variants at the end pass.
"""

from __future__ import annotations

import functools
import itertools
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import hookimpl, plugins
from prunekit.callbacks import Checkpoint, Progress
from prunekit.data import ArrayData
from prunekit.errors import DataNotFoundError
from prunekit.interfaces import (
    Method,
    RatioSchedule,
    SanityCheck,
    Scorer,
    ScoringContext,
    Stage,
    TicketContext,
)
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks
from prunekit.testing import (
    Conformance,
    ConformanceError,
    check_dataset,
    check_method,
    check_plugin,
    check_sanity_check,
    check_schedule,
    check_scorer,
    check_trainer,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "prunekit-gradnorm"


def _by_name(*cases: tuple[type, list[str]]) -> list[Any]:
    """Parameters (object class, message fragments) with the object's name as test id."""
    return [
        pytest.param(cls, fragments, id=getattr(cls, "name", cls.__name__))
        for cls, fragments in cases
    ]


def _weights(model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {layer.name: params[layer.name] for layer in ctx.layers}


class _DataFree(Scorer):
    description: ClassVar[str] = "a test scorer"
    needs_data: ClassVar[bool] = False


# ---------------------------------------------------------------------------- broken scorers
@attrs.frozen
class FlatShape(_DataFree):
    name: ClassVar[str] = "flat_shape"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        return {
            layer.name: w.detach().abs().flatten()
            for layer, w in zip(ctx.layers, _weights(model, ctx).values())
        }


@attrs.frozen
class MissingLayer(_DataFree):
    name: ClassVar[str] = "missing_layer"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        return {layer.name: torch.ones(layer.shape) for layer in ctx.layers[:-1]}


@attrs.frozen
class NanScores(_DataFree):
    name: ClassVar[str] = "nan_scores"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        out = {n: w.detach().abs().clone() for n, w in _weights(model, ctx).items()}
        out[ctx.layers[1].name].view(-1)[0] = float("nan")
        return out


@attrs.frozen
class GlobalRng(_DataFree):
    name: ClassVar[str] = "global_rng"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        return {layer.name: torch.rand(layer.shape) for layer in ctx.layers}


_calls = itertools.count()


@attrs.frozen
class Drifting(_DataFree):
    """Draws from a private generator reseeded from a call counter: differs on every call."""

    name: ClassVar[str] = "drifting"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(next(_calls))
        return {layer.name: torch.rand(layer.shape, generator=g) for layer in ctx.layers}


@attrs.frozen
class FixedSeedRandom(_DataFree):
    name: ClassVar[str] = "fixed_seed_random"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(1234)  # ignores ctx.seed
        return {layer.name: torch.rand(layer.shape, generator=g) for layer in ctx.layers}


@attrs.frozen
class MutatesWeights(_DataFree):
    name: ClassVar[str] = "mutates_weights"

    @torch.no_grad()
    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        weights = _weights(model, ctx)
        for w in weights.values():
            w.mul_(0.5)  # e.g. a normalisation done in place
        return {n: w.detach().abs().clone() for n, w in weights.items()}


@attrs.frozen
class Snipish(Scorer):
    """|θ·g| on the scoring batch in train mode, restoring modes and BatchNorm statistics;
    ``sloppy`` breaks one rule of the contract."""

    name: ClassVar[str] = "snipish"
    description: ClassVar[str] = "a test data scorer"
    sloppy: str = "ok"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        weights = list(_weights(model, ctx).values())
        modes = [(m, m.training) for m in model.modules()]
        buffers = [(b, b.clone()) for b in model.buffers()]
        try:
            model.train()
            x, y = ctx.batches[0]
            if self.sloppy != "dtype":
                x = x.to(weights[0].dtype)
            loss = F.cross_entropy(model(x), y)
            if self.sloppy == "backward":
                loss.backward()
                grads = [w.grad for w in weights]
            else:
                grads = torch.autograd.grad(loss, weights)
        finally:
            for m, mode in modes:
                m.training = mode
            if self.sloppy != "bn_stats":
                with torch.no_grad():
                    for b, value in buffers:
                        b.copy_(value)
        return {
            layer.name: (w * g).detach().abs() for layer, w, g in zip(ctx.layers, weights, grads)
        }


@attrs.frozen
class IgnoresData(Scorer):
    name: ClassVar[str] = "ignores_data"
    description: ClassVar[str] = "magnitude that claims to need data"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        return {n: w.detach().abs().clone() for n, w in _weights(model, ctx).items()}


@attrs.frozen
class WrongDevice(_DataFree):
    name: ClassVar[str] = "wrong_device"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        return {layer.name: torch.empty(layer.shape, device="meta") for layer in ctx.layers}


@attrs.frozen
class FlipsMasks(_DataFree):
    name: ClassVar[str] = "flips_masks"

    def score(self, model, ctx):  # type: ignore[no-untyped-def]
        for m in ctx.masks.values():
            m.logical_not_()
        return {n: w.detach().abs().clone() for n, w in _weights(model, ctx).items()}


@pytest.mark.parametrize(
    ("scorer", "fragments"),
    _by_name(
        (
            FlatShape,
            [
                "scorer 'flat_shape' on layer 'conv1.weight'",
                "shape (36,)",
                "expected shape (4, 1, 3, 3)",
            ],
        ),
        (
            MissingLayer,
            ["returned no scores for layer(s) fc.weight", "expected one tensor per prunable layer"],
        ),
        (
            NanScores,
            ["on layer 'conv2.weight'", "1 of 216 scores are not finite", "expected finite scores"],
        ),
        (
            GlobalRng,
            ["global random number generator", "expected randomness drawn only from ctx.generator"],
        ),
        (
            Drifting,
            [
                "two calls with the same seed gave different scores for layer 'conv1.weight'",
                "expected identical scores",
            ],
        ),
        (
            FixedSeedRandom,
            [
                "depend on neither the weights nor the data",
                "seeds 0 and 1 gave identical scores",
                "expected a different random draw for every seed",
            ],
        ),
        (
            MutatesWeights,
            [
                "changed the weight conv1.weight",
                "expected the model's weights and buffers bit for bit unchanged",
            ],
        ),
        (
            IgnoresData,
            [
                "needs_data is True but the scores did not change when the scoring data changed",
                "Set needs_data = False",
            ],
        ),
        (
            WrongDevice,
            [
                "on layer 'conv1.weight'",
                "the scores are on meta, the model is on cpu",
                "expected scores on the model's device",
            ],
        ),
        (FlipsMasks, ["changed the mask of layer conv1.weight", "expected ctx.masks untouched"]),
    ),
)
def test_broken_scorer_is_caught(scorer: type[Scorer], fragments: list[str]) -> None:
    """Each broken scorer fails the kit with a message naming the problem, the layer or the
    model where it happened, and what was expected."""
    with pytest.raises(ConformanceError) as info:
        check_scorer(scorer)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("sloppy", "fragments"),
    [
        (
            "bn_stats",
            [
                "changed the buffer (e.g. BatchNorm running statistics) bn1.running_mean",
                "keep BatchNorm statistics",
            ],
        ),
        ("backward", ["left gradients in .grad of conv1.weight", "Use torch.autograd.grad"]),
        ("dtype", ["conv net (float64, eval mode", "raised RuntimeError"]),
    ],
)
def test_sloppy_data_scorer_is_caught(sloppy: str, fragments: list[str]) -> None:
    """A data scorer that forwards in train mode without restoring BatchNorm statistics, that
    calls backward(), or that feeds float32 batches to a float64 model is caught, saying which."""
    with pytest.raises(ConformanceError) as info:
        check_scorer(Snipish, sloppy=sloppy)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_scorer_left_in_another_mode_is_caught() -> None:
    """A scorer that switches the model to train mode and leaves it there is caught."""

    @attrs.frozen
    class LeavesTrainMode(_DataFree):
        name: ClassVar[str] = "leaves_train_mode"

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            model.train()
            return {n: w.detach().abs().clone() for n, w in _weights(model, ctx).items()}

    with pytest.raises(
        ConformanceError,
        match=r"left module\(s\) .*fc1.* in train mode; expected every module's train/eval flag",
    ):
        check_scorer(LeavesTrainMode)


def test_scorer_options_and_registration_are_checked() -> None:
    """Unknown options, an option without default and an unregistered name are reported."""
    with pytest.raises(
        ConformanceError, match=r"cannot be built with options \{'temperature': 2\}"
    ):
        check_scorer(Snipish, temperature=2)

    @attrs.frozen(kw_only=True)
    class NeedsOption(_DataFree):
        name: ClassVar[str] = "needs_option"
        power: float

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            return {}

    with pytest.raises(
        ConformanceError, match=r"cannot be built without options .*every option to have a default"
    ):
        check_scorer(NeedsOption, power=2.0)
    with pytest.raises(
        ConformanceError, match=r"scorer 'no_such_scorer' is not registered: .*prunekit plugins"
    ):
        check_scorer("no_such_scorer")
    with pytest.raises(
        ConformanceError,
        match=r"is not a Scorer; expected a subclass of prunekit\.interfaces\.Scorer",
    ):
        check_scorer(Uniformish)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- broken schedules
@attrs.frozen
class Uniformish(RatioSchedule):
    """Uniform budgets; ``sloppy`` breaks one rule."""

    name: ClassVar[str] = "uniformish"
    description: ClassVar[str] = "a test schedule"
    sloppy: str = "none"

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, Any]:
        counts: dict[str, Any] = {layer.name: round(density * layer.numel) for layer in layers}
        first = layers[0].name
        if self.sloppy == "first_dense":  # keeps the first layer whole whatever the target
            counts[first] = layers[0].numel
        elif self.sloppy == "overflow":
            counts[first] = layers[0].numel + 1
        elif self.sloppy == "float":
            counts[first] = density * layers[0].numel
        elif self.sloppy == "floor_minus_one":
            counts = {layer.name: max(0, int(density * layer.numel) - 1) for layer in layers}
        elif self.sloppy == "sorts_in_place":
            for s in scores.values():
                s.clamp_(min=0)
        return counts


@pytest.mark.parametrize(
    ("sloppy", "fragments"),
    [
        (
            "first_dense",
            [
                "schedule 'uniformish' on the kit's conv net",
                "at density 0.5:",
                "the counts keep",
                "within one weight per layer (±3)",
            ],
        ),
        (
            "overflow",
            ["on layer 'conv1.weight'", "the keep count is 37", "expected a count in 0..36"],
        ),
        ("float", ["on layer 'conv1.weight'", "the keep count is 36.0 (float)", "expected an int"]),
        (
            "floor_minus_one",
            ["at density 1.0", "are not dense", "every layer kept whole at density 1.0"],
        ),
        (
            "sorts_in_place",
            ["changed the scores of layer conv1.weight in place", "expected the scores untouched"],
        ),
    ],
)
def test_broken_schedule_is_caught(sloppy: str, fragments: list[str]) -> None:
    """A schedule that misses the density, overflows a layer, returns floats, is not dense at
    1.0 or changes the scores fails, naming the layer stack, the density and the rule."""
    with pytest.raises(ConformanceError) as info:
        check_schedule(Uniformish, sloppy=sloppy)
    for fragment in fragments:
        assert fragment in str(info.value)


# ---------------------------------------------------------------------------- broken checks
@attrs.frozen
class DoesNothing(SanityCheck):
    name: ClassVar[str] = "does_nothing"
    description: ClassVar[str] = "declares a ticket stage, implements nothing"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})


@attrs.frozen
class ScalesScores(SanityCheck):
    name: ClassVar[str] = "scales_scores"
    description: ClassVar[str] = "multiplies scores by 2: the same weights are selected"
    stages: ClassVar[frozenset[Stage]] = frozenset({"scores"})

    def perturb_scores(self, scores, generator):  # type: ignore[no-untyped-def]
        return {n: s * 2 for n, s in scores.items()}


@attrs.frozen
class LabelsInPlace(SanityCheck):
    name: ClassVar[str] = "labels_in_place"
    description: ClassVar[str] = "overwrites the labels of its input"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})

    def perturb_data(
        self, data: ArrayData, num_classes: int, generator: torch.Generator
    ) -> ArrayData:
        data.y.copy_(torch.randint(0, num_classes, data.y.shape, generator=generator))
        return data


@attrs.frozen
class UnseededLabels(SanityCheck):
    name: ClassVar[str] = "unseeded_labels"
    description: ClassVar[str] = "random labels from the global generator"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})

    def perturb_data(
        self, data: ArrayData, num_classes: int, generator: torch.Generator
    ) -> ArrayData:
        return ArrayData(x=data.x, y=torch.randint(0, num_classes, data.y.shape))


@attrs.frozen
class DictMasks(SanityCheck):
    name: ClassVar[str] = "dict_masks"
    description: ClassVar[str] = "returns a plain dict"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})

    def perturb_ticket(self, ticket: TicketContext):  # type: ignore[no-untyped-def]
        return {n: ~m for n, m in ticket.masks.items()}


@attrs.frozen
class FlipsMaskInPlace(SanityCheck):
    name: ClassVar[str] = "flips_mask_in_place"
    description: ClassVar[str] = "inverts the given masks in place"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})

    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        for m in ticket.masks.values():
            m.logical_not_()
        return ticket.masks


@attrs.frozen
class BadReason(SanityCheck):
    name: ClassVar[str] = "bad_reason"
    description: ClassVar[str] = "refuses returns a bool"
    stages: ClassVar[frozenset[Stage]] = frozenset({"scores"})

    def refuses(self, method: Method) -> Any:
        return method.scorer is None


@attrs.frozen
class BadStage(SanityCheck):
    name: ClassVar[str] = "bad_stage"
    description: ClassVar[str] = "a stage that does not exist"
    stages: ClassVar[frozenset[Stage]] = frozenset({"training"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("check", "fragments"),
    _by_name(
        (
            DoesNothing,
            [
                "check 'does_nothing'",
                "declares stage 'ticket' but perturb_ticket() changed nothing",
                "only the 'none' check may be a no-op",
            ],
        ),
        (ScalesScores, ["declares stage 'scores' but perturb_scores() changed nothing"]),
        (
            LabelsInPlace,
            ["at stage 'pruning_data'", "changed its input in place", "the input untouched"],
        ),
        (
            UnseededLabels,
            [
                "two calls with generators of the same seed gave different data",
                "Draw everything from the generator argument",
            ],
        ),
        (DictMasks, ["perturb_ticket() returned a dict", "expected a prunekit.masks.Masks"]),
        (
            FlipsMaskInPlace,
            ["on layer 'conv1.weight'", "changed the mask tensor it was given in place"],
        ),
        (
            BadReason,
            [
                "not_applicable(",
                "returned False",
                "expected None (the check applies) or a non-empty str",
            ],
        ),
        (BadStage, ["its stage is 'training'", "expected one of pruning_data, scores, ticket"]),
    ),
)
def test_broken_check_is_caught(check: type[SanityCheck], fragments: list[str]) -> None:
    """A check that does nothing, changes its input, is not deterministic under its generator,
    returns the wrong type, or declares a bad stage or reason fails with a message saying so."""
    with pytest.raises(ConformanceError) as info:
        check_sanity_check(check)
    for fragment in fragments:
        assert fragment in str(info.value)


@attrs.frozen
class OwnDataRule(SanityCheck):
    name: ClassVar[str] = "own_data_rule"
    description: ClassVar[str] = "repeats the data rule in an override of not_applicable"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})

    def not_applicable(self, method: Method, uses_data: bool) -> str | None:  # type: ignore[misc]
        return None if uses_data else "no data"

    def perturb_data(
        self, data: ArrayData, num_classes: int, generator: torch.Generator
    ) -> ArrayData:
        return ArrayData(x=data.x, y=torch.randint(0, num_classes, data.y.shape, generator=generator))


def test_check_overriding_not_applicable_is_caught() -> None:
    """A check that overrides the core's not_applicable (instead of giving a reason of its
    own in refuses) fails, naming refuses as the place for its reasons."""
    with pytest.raises(ConformanceError) as info:
        check_sanity_check(OwnDataRule)
    for fragment in ("check 'own_data_rule'", "it overrides not_applicable()", "refuses(method)"):
        assert fragment in str(info.value)


# ---------------------------------------------------------------------------- broken methods
def _register(kit: Conformance, *objects: Any, names: dict[int, str] | None = None) -> None:
    """Register test objects through a runtime plugin for the duration of one test."""
    module = types.SimpleNamespace()
    by_kind: dict[str, list[Any]] = {}
    for obj in objects:
        kind = (
            "method"
            if isinstance(obj, Method)
            else "scorer"
            if issubclass(obj, Scorer)
            else "ratio_schedule"
        )
        by_kind.setdefault(kind, []).append(obj)

    def hook(kind: str):  # type: ignore[no-untyped-def]
        def register_objects(register):  # type: ignore[no-untyped-def]
            for i, obj in enumerate(by_kind.get(kind, [])):
                register(obj, name=(names or {}).get(i) if kind == "method" else None)

        return hookimpl(register_objects)

    module.register_scorers = hook("scorer")
    module.register_ratio_schedules = hook("ratio_schedule")
    module.register_methods = hook("method")
    kit.register(module, "kit_test_plugin")


def test_method_with_unknown_scorer(prunekit_conformance: Conformance) -> None:
    """A recipe naming a scorer nobody registered fails, naming the missing scorer."""
    _register(
        prunekit_conformance,
        Method(name="ghost", description="d", family="initial", scorer="no_such_scorer"),
    )
    with pytest.raises(
        ConformanceError,
        match="method 'ghost': its scorer cannot be built: unknown scorer 'no_such_scorer'",
    ):
        check_method("ghost")


def test_method_registered_under_another_name(prunekit_conformance: Conformance) -> None:
    """A recipe registered as 'alias' whose name field says 'real' fails."""
    method = Method(
        name="real", description="d", family="random", scorer="random", schedule="uniform"
    )
    _register(prunekit_conformance, method, names={0: "alias"})
    with pytest.raises(
        ConformanceError, match="registered as 'alias' but its name field is 'real'"
    ):
        check_method("alias")


def test_method_that_misses_the_density(prunekit_conformance: Conformance) -> None:
    """A recipe whose schedule keeps the first layer whole at any target ends above the target
    density; prune() refuses the mask and the kit names the sparsity and the counts."""

    @attrs.frozen
    class FirstWhole(Uniformish):
        name: ClassVar[str] = "first_whole"
        sloppy: str = "first_dense"

    method = Method(
        name="first_whole_random",
        description="d",
        family="random",
        scorer="random",
        schedule="first_whole",
    )
    _register(prunekit_conformance, FirstWhole, method)
    with pytest.raises(
        ConformanceError,
        match=r"sparsity 0\.5 on the kit's conv net: .*kept 153 of 270 prunable weights .*"
        r"keeps 135 ± 3",
    ):
        check_method("first_whole_random")


# ---------------------------------------------------------------------------- plugins, fixture
def test_check_plugin_reports_missing_and_broken_plugins(prunekit_conformance: Conformance) -> None:
    """check_plugin says how to install a plugin that is not loaded, and lists the problems
    of a plugin that is."""
    with pytest.raises(
        ConformanceError, match=r"plugin 'not_installed': it is not loaded .*pip install -e \."
    ):
        check_plugin("not_installed")

    class Raising:
        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    prunekit_conformance.register(Raising(), "raising_plugin")
    with pytest.raises(
        ConformanceError, match="it has problems: hook register_scorers raised RuntimeError: boom"
    ):
        check_plugin("raising_plugin")


def test_fixture_registers_for_one_test_and_checks_everything(
    prunekit_conformance: Conformance,
) -> None:
    """The pytest fixture (loaded through the pytest11 entry point) registers a plugin, checks
    every object it registered, and removes it again on close."""
    method = Method(
        name="snipish_uniform",
        description="d",
        family="initial",
        scorer="snipish",
        schedule="uniformish",
    )
    _register(prunekit_conformance, Snipish, Uniformish, method)
    assert isinstance(prunekit_conformance, Conformance)
    registered = prunekit_conformance.check_plugin("kit_test_plugin")
    assert registered == {
        "scorer": ["snipish"],
        "ratio_schedule": ["uniformish"],
        "method": ["snipish_uniform"],
    }
    prunekit_conformance.close()
    assert "snipish" not in plugins.registry("scorer")


def test_example_plugin_passes_the_kit(
    prunekit_conformance: Conformance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example plugin of docs/examples (grad_norm scorer, first_dense schedule, sign_flip
    check, grad_norm method) passes every check when registered at runtime."""
    monkeypatch.setenv("PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")  # an installed copy would clash
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import prunekit_gradnorm

    try:
        prunekit_conformance.register(prunekit_gradnorm, "gradnorm_runtime")
        registered = check_plugin("gradnorm_runtime")
    finally:
        sys.modules.pop("prunekit_gradnorm", None)
    assert registered == {
        "scorer": ["grad_norm"],
        "ratio_schedule": ["first_dense"],
        "sanity_check": ["sign_flip"],
        "method": ["grad_norm"],
    }


# ---------------------------------------------------------------------------------- trainers
class _WeightsOnlyMasks(Masks):
    """Masks whose enforcer re-zeroes the weights only: neither the gradients nor the
    optimizer state."""

    def enforcer(self, model, optimizer=None):  # type: ignore[no-untyped-def]
        return _WeightsOnlyEnforcer(super().enforcer(model, None))


class _WeightsOnlyEnforcer:
    def __init__(self, weights: Any) -> None:
        self.weights = weights

    def __call__(self) -> None:
        self.weights()

    def gradients(self) -> None:
        pass


def _broken_trainer(name: str, fit: Any) -> type:
    """The built-in trainer with ``fit`` replaced by ``fit(super_fit, model, data, config, **kw)``."""
    from prunekit_plugins.sgd import SGDTrainer

    def method(self, model, data, config, **kwargs):  # type: ignore[no-untyped-def]
        return fit(super(cls, self).fit, model, data, config, **kwargs)

    cls = attrs.frozen(kw_only=True)(
        type(name, (SGDTrainer,), {"name": name, "description": f"broken: {name}", "fit": method})
    )
    return cls


def _pruned_by_value(fit, model, data, config, masks=None, **kw):  # type: ignore[no-untyped-def]
    params = dict(model.named_parameters())
    return fit(model, data, config, masks=Masks({n: params[n] != 0 for n in masks}), **kw)


def _alias_snapshot(fit, model, data, config, **kw):  # type: ignore[no-untyped-def]
    result = fit(model, data, config, **kw)
    return attrs.evolve(result, snapshots={**result.snapshots, 0: model.state_dict()})


def _without(kind, fit, model, data, config, callbacks=(), **kw):  # type: ignore[no-untyped-def]
    """Drops the callbacks of one kind."""
    return fit(model, data, config, callbacks=[c for c in callbacks if not isinstance(c, kind)], **kw)


def _restarts(fit, model, data, config, callbacks=(), **kw):  # type: ignore[no-untyped-def]
    """Writes checkpoints but never resumes: it removes the file and trains from the start."""
    for c in callbacks:
        if isinstance(c, Checkpoint):
            c.path.unlink(missing_ok=True)
    return fit(model, data, config, callbacks=callbacks, **kw)


def _unpickles(fit, model, data, config, callbacks=(), **kw):  # type: ignore[no-untyped-def]
    """Reads a checkpoint with full unpickling before resuming."""
    for c in callbacks:
        if isinstance(c, Checkpoint) and c.path.is_file():
            torch.load(c.path, weights_only=False)
    return fit(model, data, config, callbacks=callbacks, **kw)


_SEEDS = itertools.count(1)


def _unseeded(fit, model, data, config, seed=0, **kw):  # type: ignore[no-untyped-def]
    """Ignores the seed it is given: every fit draws another data order."""
    return fit(model, data, config, seed=next(_SEEDS), **kw)


_BROKEN_TRAINERS = [
    (
        _broken_trainer("no_enforcement", lambda fit, m, d, c, masks=None, **kw: fit(m, d, c, **kw)),
        ["pruned weights of", "are not zero", "masks.enforcer(model, optimizer)"],
    ),
    (
        _broken_trainer(
            "weights_only",
            lambda fit, m, d, c, masks=None, **kw: fit(m, d, c, masks=_WeightsOnlyMasks(masks), **kw),
        ),
        ["'momentum_buffer'", "nonzero at", "pruned positions", "after step 1"],
    ),
    (_broken_trainer("pruned_by_value", _pruned_by_value), ["still 0", "never from w != 0"]),
    (
        _broken_trainer("no_snapshots", lambda fit, m, d, c, callbacks=(), **kw: fit(m, d, c, **kw)),
        ["no snapshot at step 0", "Snapshots callback"],
    ),
    (
        _broken_trainer("no_progress", functools.partial(_without, Progress)),
        ["a Progress callback got 0 records for 2 epochs", "on_epoch_end once per epoch"],
    ),
    (
        _broken_trainer("no_checkpoint", functools.partial(_without, Checkpoint)),
        ["after epoch 1 no checkpoint was written", "TrainRun.resume_state"],
    ),
    (
        _broken_trainer("restarts", _restarts),
        ["the run took 6 more steps; straight through it takes 6", "resume from its checkpoint"],
    ),
    (
        _broken_trainer("unpickles", _unpickles),
        ["holds a pickled object ran its code", "weights_only=True"],
    ),
    (_broken_trainer("alias_snapshot", _alias_snapshot), ["snapshot at step 0", "is it a copy"]),
    (
        _broken_trainer(
            "best_below_final",
            lambda fit, *a, **kw: attrs.evolve(fit(*a, **kw), best_accuracy=0.0),
        ),
        ["best accuracy 0.0 <", "at least the final one"],
    ),
    (
        _broken_trainer(
            "wrong_steps", lambda fit, *a, **kw: attrs.evolve(fit(*a, **kw), steps=0)
        ),
        ["TrainResult.steps is 0 but 6 optimizer steps ran"],
    ),
    (
        _broken_trainer(
            "one_epoch", lambda fit, m, d, c, **kw: fit(m, d, attrs.evolve(c, epochs=1), **kw)
        ),
        [
            "3 optimizer steps ran for 2 epochs of 48 images in batches of 16",
            "expected 6 steps: one per batch, every epoch (config.epochs)",
        ],
    ),
    (
        _broken_trainer("unseeded", _unseeded),
        [
            "two fits of the same model and masks with seed 0 gave different weights of",
            "Seed every generator from fit()'s seed",
        ],
    ),
    (
        _broken_trainer(
            "nan_accuracy",
            lambda fit, *a, **kw: attrs.evolve(fit(*a, **kw), final_accuracy=float("nan")),
        ),
        ["TrainResult.final_accuracy is nan", "expected a float in [0, 1]"],
    ),
    (
        _broken_trainer(
            "infinite_loss",
            lambda fit, *a, **kw: attrs.evolve(fit(*a, **kw), final_loss=float("inf")),
        ),
        ["TrainResult.final_loss is inf", "expected a finite float"],
    ),
    (
        _broken_trainer("not_a_result", lambda fit, *a, **kw: {"result": fit(*a, **kw)}),
        ["fit() returned a dict", "expected a prunekit.interfaces.TrainResult"],
    ),
]


@pytest.mark.parametrize("cls, fragments", _by_name(*_BROKEN_TRAINERS))
def test_kit_catches_broken_trainer(cls: type, fragments: list[str]) -> None:
    """Each broken trainer (no enforcement, weights but not optimizer state, masks read from
    w != 0, callbacks ignored or snapshots aliased, progress or checkpoints ignored, a run that
    restarts instead of resuming, a checkpoint unpickled, best < final, wrong step count, epochs
    ignored, seed ignored, non-finite accuracy or loss, no TrainResult) fails the trainer contract with a
    message naming the problem."""
    with pytest.raises(ConformanceError) as err:
        check_trainer(cls)
    message = str(err.value)
    assert message.startswith(f"trainer {cls.name!r}")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_kit_trainer_check_passes_the_healthy_base() -> None:
    """Control: the unbroken trainer the broken ones derive from passes, as a class and by
    its registered name."""
    from prunekit_plugins.sgd import SGDTrainer

    check_trainer(SGDTrainer)
    check_trainer("sgd")


# ---------------------------------------------------------------------------------- datasets
def _broken_dataset(name: str, load: Any, *, needs_root: bool = False) -> type:
    """The built-in synthetic dataset with ``load`` replaced by ``load(super_load, root)``."""
    from prunekit_plugins.datasets import Synthetic

    def method(self, root=None, *, download=False):  # type: ignore[no-untyped-def]
        return load(functools.partial(super(cls, self).load, download=download), root)

    namespace = {"name": name, "description": f"broken: {name}", "needs_root": needs_root, "load": method}
    cls = attrs.frozen(kw_only=True)(type(name, (Synthetic,), namespace))
    return cls


SMALL = {"train_size": 40, "test_size": 12, "height": 8, "width": 8}


def _reshuffled(load, root):  # type: ignore[no-untyped-def]
    bundle = load(root)
    return bundle.with_train(bundle.train.subset(torch.randperm(len(bundle.train))))


def _raises(error: BaseException) -> Any:
    def load(super_load, root):  # type: ignore[no-untyped-def]
        if root is None or not any(Path(root).iterdir()):
            raise error
        return super_load(root)

    return load


_BROKEN_DATASETS = [
    (
        _broken_dataset("reshuffled", _reshuffled),
        ["two loads gave different train splits", "a generator of a fixed seed"],
    ),
    (
        _broken_dataset("too_few_classes", lambda load, root: attrs.evolve(load(root), num_classes=2)),
        ["train split: labels lie in 0..9", "expected labels in 0..1 (num_classes 2)"],
    ),
    (
        _broken_dataset(
            "cropped_test",
            lambda load, root: (b := load(root)) and attrs.evolve(b, test=ArrayData(x=b.test.x[:, :, :4], y=b.test.y)),
        ),
        ["train images are (3, 8, 8) (C, H, W) but test images (3, 4, 8)", "the same image shape in both splits"],
    ),
    (
        _broken_dataset("zero_std", lambda load, root: attrs.evolve(load(root), std=(0.0, 0.0, 0.0))),
        ["its std is (0.0, 0.0, 0.0)", "3 finite positive float(s), one per channel"],
    ),
    (
        _broken_dataset(
            "float_labels",
            lambda load, root: (b := load(root)) and b.with_train(ArrayData(x=b.train.x, y=b.train.y.float())),
        ),
        ["train split: the labels are torch.float32", "expected int64 (N,)"],
    ),
    (
        _broken_dataset("root_ignored", lambda load, root: load(root), needs_root=True),
        ["without --data-root (load(None)): load() returned data", "Set needs_root = False"],
    ),
    (
        _broken_dataset(
            "two_lines", _raises(DataNotFoundError("no files\npass --data-root DIR")), needs_root=True
        ),
        ["without --data-root (load(None)): the error is", "expected one line"],
    ),
    (
        _broken_dataset("vague", _raises(DataNotFoundError("files are missing")), needs_root=True),
        ["does not mention --data-root", "tells the user to pass --data-root DIR"],
    ),
    (
        _broken_dataset("wrong_error", _raises(FileNotFoundError("data")), needs_root=True),
        ["load() raised FileNotFoundError: data", "expected a prunekit.errors.DataNotFoundError"],
    ),
]


@pytest.mark.parametrize("cls, fragments", _by_name(*_BROKEN_DATASETS))
def test_kit_catches_broken_dataset(cls: type, fragments: list[str]) -> None:
    """Each broken dataset (a split that changes between loads, labels past num_classes, test
    images of another shape, a zero std, float labels; and, for a dataset that reads files,
    loading without --data-root, an error of two lines, one that does not name --data-root or
    that is not a PrunekitError) fails the dataset contract, saying what was wrong."""
    with pytest.raises(ConformanceError) as err:
        check_dataset(cls, **SMALL)
    message = str(err.value)
    assert message.startswith(f"dataset {cls.name!r}")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def _write_image_folder(root: Path) -> None:
    """train/ and val/ of two classes of 4x6 RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("ant", "bee"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_kit_dataset_check_passes_healthy_datasets(tmp_path: Path) -> None:
    """Controls: the synthetic dataset the broken ones derive from (as a class with options)
    and imagefolder from a folder of images pass; so does cifar10, which reads files, by name
    with no root (only its refusals are checked). Every built-in dataset is checked by name in
    test_conformance_builtins."""
    from prunekit_plugins.datasets import Synthetic

    check_dataset(Synthetic, **SMALL)
    _write_image_folder(tmp_path)
    check_dataset("imagefolder", root=tmp_path)
    check_dataset("cifar10")


def test_check_plugin_checks_the_datasets_and_trainers_it_registered(
    prunekit_conformance: Conformance,
) -> None:
    """check_plugin runs the dataset and trainer contracts on what a plugin registered."""
    reshuffled = _broken_dataset("reshuffled_plugin", _reshuffled)
    module = types.SimpleNamespace(register_datasets=hookimpl(lambda register: register(reshuffled)))
    prunekit_conformance.register(module, "dataset_plugin")
    with pytest.raises(ConformanceError, match=r"dataset 'reshuffled_plugin' loaded: two loads gave different"):
        prunekit_conformance.check_plugin("dataset_plugin")
    one_epoch = _BROKEN_TRAINERS[-5][0]
    assert one_epoch.name == "one_epoch"
    module = types.SimpleNamespace(register_trainers=hookimpl(lambda register: register(one_epoch)))
    prunekit_conformance.register(module, "trainer_plugin")
    with pytest.raises(ConformanceError, match=r"trainer 'one_epoch'.*3 optimizer steps ran for 2 epochs"):
        prunekit_conformance.check_plugin("trainer_plugin")
