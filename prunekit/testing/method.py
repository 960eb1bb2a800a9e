"""The method contract (:class:`~prunekit.interfaces.Method` recipes): :func:`check_method`."""

from __future__ import annotations

from torch import nn

from prunekit import pipeline
from prunekit.data import DataBundle
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.dense import DenseCache
from prunekit.errors import PrunekitError
from prunekit.interfaces import (
    Method,
    TrainConfig,
)
from prunekit.plugins import get_plugins
from prunekit.testing.fixtures import (
    ConformanceError,
    fail,
    layer_names,
    single_threaded,
    tiny_convnet,
    tiny_data,
)

METHOD_SPARSITIES: tuple[float, ...] = (0.5, 0.8)


@single_threaded
def check_method(name: str | Method) -> None:
    """Check a method recipe: it names a registered scorer and schedule whose options build,
    and :func:`prunekit.pipeline.prune` on the kit's conv net (sparsities 0.5 and 0.8; dense
    pre-training of one epoch with the ``sgd`` trainer when the method pre-trains) gives
    boolean masks for every prunable layer at the target density (within one weight per layer,
    or more where a global threshold keeps ties), zero weights at pruned positions, and the
    same masks again for the same seed.
    """
    if isinstance(name, str):
        subject = f"method {name!r}"
        try:
            method = get_plugins().registry("method").get(name)
        except PrunekitError as err:
            raise ConformanceError(
                f"{subject} is not registered: {err}; see `prunekit plugins`"
            ) from None
        if not isinstance(method, Method):
            fail(
                subject,
                f"the registered object is a {type(method).__name__}",
                "a prunekit.interfaces.Method instance",
            )
        if method.name != name:
            fail(
                subject,
                f"it is registered as {name!r} but its name field is {method.name!r}",
                "the same name",
            )
    else:
        method, subject = name, f"method {getattr(name, 'name', name)!r}"
        if not isinstance(method, Method):
            fail(
                subject, f"it is a {type(method).__name__}", "a prunekit.interfaces.Method instance"
            )
    if not method.description.strip():
        fail(subject, "its description is empty", "a one-line description")
    if method.scorer is not None:
        for kind, part, options in (
            ("scorer", method.scorer, method.scorer_options),
            ("ratio_schedule", method.schedule, method.schedule_options),
        ):
            try:
                pipeline.instantiate(kind, part, dict(options))
            except PrunekitError as err:
                fail(
                    subject,
                    f"its {kind.replace('_', ' ')} cannot be built: {err}",
                    f"a registered {kind.replace('_', ' ')} and options it accepts",
                )
    data = tiny_data()
    for sparsity in METHOD_SPARSITIES:
        where = f"pruned to sparsity {sparsity} on the kit's conv net"
        runs = [_prune(subject, where, method, data, sparsity) for _ in range(2)]
        (model, outcome), (_, again) = runs
        masks = outcome.masks
        layers = outcome.layers
        if list(masks) != [la.name for la in layers]:
            fail(
                f"{subject} {where}",
                f"the masks name {list(masks)}",
                f"one mask per prunable layer ({layer_names(layers)})",
            )
        total = sum(la.numel for la in layers)
        target = total if method.scorer is None else round((1 - sparsity) * total)
        kept = masks.kept()
        if abs(kept - target) > len(layers):
            fail(
                f"{subject} {where}",
                f"the masks keep {kept} of {total} weights",
                f"{target} within one weight per layer (±{len(layers)})",
            )
        params = dict(model.named_parameters())
        for la in layers:
            if bool((params[la.name].detach()[~masks[la.name]] != 0).any()):
                fail(
                    f"{subject} on layer {la.name!r} {where}",
                    "pruned positions hold non-zero weights",
                    "the model returned with its pruned weights zero",
                )
        if not masks.equals(again.masks):
            fail(
                f"{subject} {where}",
                "two runs with seed 0 gave different masks",
                "the same masks for the same seed",
                "Check that its scorer passes check_scorer().",
            )


def _prune(
    subject: str, where: str, method: Method, data: DataBundle, sparsity: float
) -> tuple[nn.Module, pipeline.PruneOutcome]:
    """Prune a fresh kit conv net (seed 0) with ``method``; errors become ConformanceError."""
    model = tiny_convnet()
    training = None
    if method.pretrain:
        try:
            trainer = pipeline.instantiate("trainer", DEFAULT_TRAINER)
        except PrunekitError as err:
            raise ConformanceError(
                f"{subject} pre-trains, but the kit's trainer {DEFAULT_TRAINER!r} is missing: {err}"
            ) from None
        training = pipeline.Training(
            trainer=trainer,
            config=TrainConfig(epochs=1, batch_size=16, lr=0.05, lr_schedule="constant"),
            model_name="prunekit.testing.tiny_convnet",
            dataset_key="prunekit.testing.tiny_data",
            cache=DenseCache(),
        )
    try:
        outcome = pipeline.prune(
            model,
            data,
            method,
            sparsity,
            seed=0,
            allow_collapse=True,
            init_model=lambda s: tiny_convnet(seed=s),
            training=training,
        )
    except Exception as err:
        raise ConformanceError(
            f"{subject} {where}: prune() raised {type(err).__name__}: {err}; "
            "expected the recipe to prune "
            "any model with Conv/Linear layers (see the traceback above)"
        ) from err
    return model, outcome
