"""Shared fixtures: a clean plugin state for every test and tiny deterministic nets."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Each test loads plugins from scratch and leaves no runtime plugin behind."""
    from prunekit import plugins

    for var in PLUGIN_SWITCHES:
        monkeypatch.delenv(var, raising=False)
    saved = list(plugins._runtime)
    plugins.reset_plugins()
    yield
    # the CLI's --plugins-dir and --strict-plugins set these for the process: never let them
    # reach the next test (or a module-scoped fixture that loads plugins before it starts)
    for var in PLUGIN_SWITCHES:
        os.environ.pop(var, None)
    plugins._runtime[:] = saved
    plugins.reset_plugins()


PLUGIN_SWITCHES = (
    "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD",
    "PRUNEKIT_PLUGINS",
    "PRUNEKIT_PLUGINS_DIR",
    "PRUNEKIT_STRICT_PLUGINS",
)


def tiny_convnet(num_classes: int = 4, seed: int = 0) -> nn.Module:
    """conv(1->4) - BN - ReLU - conv(4->6) - ReLU - avgpool - linear(6->classes)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, num_classes),
    )


@pytest.fixture
def convnet() -> nn.Module:
    return tiny_convnet()
