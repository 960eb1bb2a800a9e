"""prunekit-gradnorm passes prunekit's conformance kit and does what its docstrings say.

Run after ``pip install -e .`` (the entry point must be installed for prunekit to find it).
"""

from __future__ import annotations

import torch

from prunekit import Masks, TicketContext, prunable_layers
from prunekit.testing import check_sanity_check, check_schedule, check_scorer, tiny_convnet
from prunekit_gradnorm import FirstDense, SignFlip


def test_installed_plugin_passes_the_kit(prunekit_conformance) -> None:  # type: ignore[no-untyped-def]
    """The entry point loads the plugin without problems, and the scorer, schedule, check and
    method it registers all pass the conformance kit with their default options."""
    registered = prunekit_conformance.check_plugin("gradnorm")
    assert registered == {
        "scorer": ["grad_norm"],
        "ratio_schedule": ["first_dense"],
        "sanity_check": ["sign_flip"],
        "method": ["grad_norm"],
    }


def test_options_pass_the_kit() -> None:
    """Non-default options keep the contract: several scoring batches, every sign flipped."""
    check_scorer("grad_norm", samples_per_class=2, iterations=3)
    check_schedule(FirstDense)
    check_sanity_check(SignFlip, fraction=1.0)


def test_first_dense_keeps_the_ends_whole() -> None:
    """At half density the first and last layers are dense and the total is exact."""
    layers = prunable_layers(tiny_convnet())  # conv1 36, conv2 216, fc 18 weights
    counts = FirstDense().allocate(layers, 0.5, {})
    first, last = layers[0], layers[-1]
    total = sum(layer.numel for layer in layers)
    assert counts[first.name] == first.numel and counts[last.name] == last.numel
    assert sum(counts.values()) == round(0.5 * total)


def test_first_dense_falls_back_to_uniform() -> None:
    """Below the size of the first and last layers together every layer keeps the same share."""
    layers = prunable_layers(tiny_convnet())  # the ends hold 54 of 270 weights
    counts = FirstDense().allocate(layers, 0.1, {})
    assert [counts[layer.name] for layer in layers] == [4, 21, 2]  # 10% of 36, 216, 18, total 27


def test_sign_flip_keeps_mask_and_magnitudes() -> None:
    """sign_flip changes signs only: same masks, same |θ|, about half the signs flipped."""
    model = tiny_convnet()
    names = [layer.name for layer in prunable_layers(model)]
    masks = Masks.ones(model, names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ticket = TicketContext(
        model=model,
        masks=masks,
        unpruned=before,
        generator=torch.Generator().manual_seed(0),
        init_model=tiny_convnet,
    )
    assert SignFlip().perturb_ticket(ticket).equals(masks)
    after = dict(model.named_parameters())
    flipped = sum(int((torch.sign(after[n]) != torch.sign(before[n])).sum()) for n in names)
    assert all(torch.equal(after[n].abs(), before[n].abs()) for n in names)
    assert 0.35 < flipped / masks.total() < 0.65
