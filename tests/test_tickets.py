"""The lottery-ticket family: masks, rewinding points, IMP rounds, the dense-run cache, the
pruning-data checks and the command line, each checked against values computed here.

Golden values never come from the code under test: θ₀ is rebuilt with ``build_model``, θ_k and
θ_T come from a dense copy trained here with the ``sgd`` trainer (deterministic on the CPU) and
the global top-k masks are computed here by sorting |θ_T|. Models are ``digits_mlp`` (two
prunable layers) on the ``digits`` data, trained for one or two epochs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from prunekit.callbacks import Snapshots
from prunekit.cell import CellSpec, run_cell
from prunekit.data import ArrayData, DataBundle, make_generator, stratified_split
from prunekit.dense import DenseCache, DenseRun
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import (
    REINIT_SEED_OFFSET,
    PruneOutcome,
    Training,
    build_model,
    load_dataset,
    prune,
    resolve_check,
    resolve_method,
)
from prunekit.plugins import get_plugins, register_plugin, unregister_plugin
from prunekit_plugins.sgd import SGDTrainer
from tests.cli_runner import run_cli as _run

MODEL = "digits_mlp"
CONFIG = TrainConfig(epochs=1, batch_size=64, lr=0.05, lr_schedule="cosine")
FAMILY = (
    "lottery_ticket",
    "lottery_ticket_rewind",
    "imp",
    "lr_rewinding",
    "hybrid_ticket",
    "random_reinit",
)

State = dict[str, torch.Tensor]


# -------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def data() -> DataBundle:
    return load_dataset("digits")


def state(model: nn.Module) -> State:
    return {n: v.detach().clone() for n, v in model.state_dict().items()}


def weight_names(model: nn.Module) -> list[str]:
    """The prunable weights, found here: every Linear / Conv2d ``.weight`` in module order."""
    modules = model.named_modules()
    return [f"{n}.weight" for n, m in modules if isinstance(m, (nn.Linear, nn.Conv2d))]


def steps_per_epoch(n: int, batch_size: int = CONFIG.batch_size) -> int:
    return -(-n // batch_size)


def dense_copy(
    data: DataBundle, seed: int = 0, config: TrainConfig = CONFIG, snapshots: tuple[int, ...] = ()
) -> tuple[State, State, dict[int, State]]:
    """(θ₀, θ_T, {k: θ_k}) of a dense ``digits_mlp`` trained here, apart from ``prune``."""
    model = build_model(MODEL, data, seed)
    theta0 = state(model)
    result = SGDTrainer().fit(model, data, config, seed=seed, callbacks=[Snapshots(snapshots)])
    return theta0, state(model), {k: dict(v) for k, v in result.snapshots.items()}


def global_top(
    weights: State, names: list[str], keep: int, alive: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The ``keep`` largest |w| over all ``names`` (among ``alive`` positions), by sorting."""
    scores = {n: weights[n].abs().double() for n in names}
    if alive is not None:
        scores = {n: s.masked_fill(~alive[n], float("-inf")) for n, s in scores.items()}
    flat = torch.cat([scores[n].flatten() for n in names])
    threshold = torch.sort(flat, descending=True).values[keep - 1]
    return {n: scores[n] >= threshold for n in names}


def assert_masks_equal(got: Masks, want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for n, expected in want.items():
        differ = int((got[n] != expected).sum())
        assert differ == 0, f"mask of {n} differs in {differ} positions"


def assert_ticket_weights(model: nn.Module, masks: Masks, source: State) -> None:
    """Survivors hold ``source`` bit for bit, pruned weights are exactly zero, and every other
    tensor (biases) is ``source`` too."""
    now = model.state_dict()
    for name, value in source.items():
        if name in masks:
            m = masks[name]
            assert torch.equal(now[name][m], value[m]), f"survivors of {name} are not the expected"
            assert bool((now[name][~m] == 0).all()), f"pruned weights of {name} are not zero"
        else:
            assert torch.equal(now[name], value), f"{name} is not the expected tensor"


def prune_with(
    data: DataBundle,
    method: str,
    sparsity: float = 0.8,
    *,
    seed: int = 0,
    config: TrainConfig = CONFIG,
    cache: DenseCache | None = None,
    trainer: SGDTrainer | None = None,
    check: str | None = None,
) -> tuple[nn.Module, PruneOutcome]:
    recipe = resolve_method(method)
    model = build_model(MODEL, data, seed)
    training = Training(
        trainer=trainer if trainer is not None else SGDTrainer(),
        config=config,
        model_name=MODEL,
        dataset_key="digits",
        cache=cache if cache is not None else DenseCache(),
    )
    outcome = prune(
        model,
        data,
        recipe,
        sparsity,
        seed=seed,
        check=resolve_check(check, recipe) if check else None,
        init_model=lambda s: build_model(MODEL, data, s),
        training=training,
    )
    return model, outcome


def cell_spec(method: str, seed: int) -> CellSpec:
    """A digits_mlp cell trained by the spy trainer. run_cell keeps tickets per process, so
    every test that spies on run_cell uses a seed of its own."""
    return CellSpec(
        model=MODEL,
        dataset="digits",
        method=method,
        sparsity=0.8,
        seed=seed,
        protocol=CONFIG,
        trainer="spy_sgd",
    )


# ---------------------------------------------------------------------------- spy trainer
CALLS: list[dict[str, Any]] = []


@attrs.frozen(kw_only=True)
class SpySGD(SGDTrainer):
    """The sgd trainer, recording every call: masks, training data, start weights and the
    learning rate the optimizer actually used at every step."""

    name: ClassVar[str] = "spy_sgd"
    description: ClassVar[str] = "sgd that records its calls (tests)"

    def fit(  # type: ignore[override]
        self, model: nn.Module, data: DataBundle, config: TrainConfig, **kw: Any
    ) -> Any:
        given = kw.get("train_data")
        train: ArrayData = given if given is not None else data.train
        call: dict[str, Any] = {
            "density": kw["masks"].density() if kw.get("masks") is not None else None,
            "train_x": train.x.clone(),
            "train_y": train.y.clone(),
            "start": state(model),
            "snapshot_steps": {s for c in kw.get("callbacks", ()) if isinstance(c, Snapshots) for s in c.steps},
            "lrs": [],
        }
        CALLS.append(call)

        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            call["lrs"].append(optimizer.param_groups[0]["lr"])

        handle = register_optimizer_step_pre_hook(record)
        try:
            return super().fit(model, data, config, **kw)
        finally:
            handle.remove()


class SpyPlugin:
    @hookimpl
    def register_trainers(self, register):  # type: ignore[no-untyped-def]
        register(SpySGD)


@pytest.fixture
def spy() -> Iterator[list[dict[str, Any]]]:
    CALLS.clear()
    register_plugin(SpyPlugin(), "tickets_spy")
    assert "spy_sgd" in get_plugins().registry("trainer")
    yield CALLS
    unregister_plugin("tickets_spy")
    CALLS.clear()


# ------------------------------------------------------------------------------------ IMP
def test_imp_densities_are_powers_of_0_8_and_it_retrains_between_rounds(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """IMP at density 0.8³ runs three rounds at densities 0.8, 0.64, 0.512 (within one weight per
    layer), ends at the target, and trains the masked ticket between rounds: one dense run, then
    one retraining at density 0.8 and one at 0.64 (each starting from θ₀ under the round's
    mask), none after the last round."""
    sparsity = 1.0 - 0.8**3
    model, outcome = prune_with(data, "imp", sparsity, trainer=SpySGD())
    names = weight_names(model)
    total = sum(dict(model.named_parameters())[n].numel() for n in names)
    slack = len(names) / total
    got = outcome.metadata["round_densities"]
    assert len(got) == 3
    for k, d in enumerate(got, start=1):
        assert abs(d - 0.8**k) <= slack, f"round {k}: density {d}, expected {0.8**k}"
    assert abs(outcome.masks.kept() - round((1.0 - sparsity) * total)) <= len(names)
    assert got[-1] == outcome.masks.density()
    assert [c["density"] for c in spy] == [None, pytest.approx(got[0]), pytest.approx(got[1])]
    assert 0 in spy[0]["snapshot_steps"]
    theta0 = state(build_model(MODEL, data, 0))
    for call in spy[1:]:
        for n in names:
            alive = call["start"][n] != 0
            assert torch.equal(call["start"][n][alive], theta0[n][alive])
        assert torch.equal(call["start"]["fc1.bias"], theta0["fc1.bias"])


def test_imp_to_a_target_between_powers_ends_at_the_target(data: DataBundle) -> None:
    """With a target that is not a power of 0.8 (density 0.55), the rounds are 0.8^k while above
    the target (0.8, 0.64), then one last round to the target itself."""
    _, outcome = prune_with(data, "imp", 0.45)
    total = outcome.masks.total()
    slack = len(outcome.masks) / total
    expected = [0.8**k for k in range(1, 4) if 0.8**k > 0.55] + [0.55]
    assert len(outcome.metadata["round_densities"]) == len(expected) == 3
    for d, e in zip(outcome.metadata["round_densities"], expected):
        assert abs(d - e) <= slack
    assert abs(outcome.masks.kept() - round(0.55 * total)) <= len(outcome.masks)


def test_imp_masks_match_prune_reset_retrain_done_by_hand(data: DataBundle) -> None:
    """The IMP mask equals the one got by hand: train dense, keep the global top 80% of |θ|,
    reset to θ₀, retrain under the mask, keep the top 64% of the survivors, reset, retrain, keep
    the top 51.2%. The ticket's weights are θ₀ at the survivors."""
    sparsity = 1.0 - 0.8**3
    model, outcome = prune_with(data, "imp", sparsity)
    theta0, trained, _ = dense_copy(data)
    names = weight_names(model)
    total = sum(theta0[n].numel() for n in names)
    alive: dict[str, torch.Tensor] | None = None
    for k in (1, 2, 3):
        keep = round(0.8**k * total) if k < 3 else round((1.0 - sparsity) * total)
        alive = global_top(trained, names, keep, alive)
        if k < 3:
            net = build_model(MODEL, data, 0)
            masks = Masks(alive)
            masks.apply(net)
            SGDTrainer().fit(net, data, CONFIG, masks=masks, seed=0)
            trained = state(net)
    assert alive is not None
    assert_masks_equal(outcome.masks, alive)
    assert_ticket_weights(model, outcome.masks, theta0)


# ------------------------------------------------------------------------ one-shot tickets
def test_lottery_ticket_is_theta0_under_the_global_top_of_trained_weights(data: DataBundle) -> None:
    """lottery_ticket keeps the global top-20% |θ_T| of a dense copy trained here, and its
    survivors (and biases) are θ₀ of build_model(seed) bit for bit."""
    model, outcome = prune_with(data, "lottery_ticket", 0.8)
    theta0, trained, _ = dense_copy(data)
    names = weight_names(model)
    total = sum(theta0[n].numel() for n in names)
    want = global_top(trained, names, round(0.2 * total))
    assert_masks_equal(outcome.masks, want)
    assert outcome.masks.kept() == round(0.2 * total)
    assert_ticket_weights(model, outcome.masks, theta0)
    assert outcome.metadata["dense_accuracy"] > 0.5
    # the mask is not the magnitude-at-init one, so the test tells θ_T from θ₀
    at_init = global_top(theta0, names, round(0.2 * total))
    assert not torch.equal(at_init[names[0]], want[names[0]])


def test_late_rewinding_survivors_are_theta_k(data: DataBundle) -> None:
    """lottery_ticket_rewind (rewind point 0.05) gives survivors equal to θ_k with k = round(0.05
    × total steps), captured here with the trainer's snapshots, under the top-|θ_T| mask."""
    config = attrs.evolve(CONFIG, epochs=2)
    total_steps = steps_per_epoch(len(data.train)) * 2
    k = round(0.05 * total_steps)
    assert 0 < k < total_steps
    model, outcome = prune_with(data, "lottery_ticket_rewind", 0.8, config=config)
    theta0, trained, snaps = dense_copy(data, config=config, snapshots=(k,))
    names = weight_names(model)
    n_total = sum(theta0[n].numel() for n in names)
    assert_masks_equal(outcome.masks, global_top(trained, names, round(0.2 * n_total)))
    assert_ticket_weights(model, outcome.masks, snaps[k])
    for other in (theta0, trained):  # θ_k is neither θ₀ nor θ_T, so the check is sharp
        assert not torch.equal(snaps[k][names[0]], other[names[0]])


def test_lr_rewinding_starts_at_theta_T_and_restarts_the_learning_rate(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """lr_rewinding keeps θ_T under the mask; when run_cell trains the ticket, training starts
    from those weights (up to float rounding: run_cell trains its own dense run) and the optimizer's learning rate at the first step is the initial one
    and then follows the whole cosine schedule again (lr·½(1+cos πt), computed here)."""
    seed = 1
    model, outcome = prune_with(data, "lr_rewinding", 0.8, seed=seed)
    _, trained, _ = dense_copy(data, seed=seed)
    names = weight_names(model)
    total = sum(trained[n].numel() for n in names)
    assert_masks_equal(outcome.masks, global_top(trained, names, round(0.2 * total)))
    assert_ticket_weights(model, outcome.masks, trained)

    spec = cell_spec("lr_rewinding", seed)
    result = run_cell(spec)
    assert [c["density"] for c in spy] == [None, pytest.approx(outcome.masks.density())]
    final = spy[1]
    # the two dense runs (here and in run_cell) agree up to float summation order: the BLAS
    # kernels' rounding depends on buffer alignment, so a few ulp apart, never a different state
    for n, v in model.state_dict().items():
        start = final["start"][n]
        assert torch.equal(start != 0, v != 0), f"training did not start under the ticket's mask ({n})"
        assert torch.allclose(start, v, rtol=0, atol=1e-6), f"training did not start at the ticket ({n})"
    n_steps = steps_per_epoch(len(data.train))
    schedule = [CONFIG.lr * 0.5 * (1 + math.cos(math.pi * i / n_steps)) for i in range(n_steps)]
    assert final["lrs"][0] == CONFIG.lr
    assert final["lrs"] == pytest.approx(schedule, rel=1e-12, abs=1e-15)
    assert spy[0]["lrs"] == pytest.approx(schedule, rel=1e-12, abs=1e-15)  # the dense run's own
    assert result.final_accuracy > 0.5


def test_late_rewinding_continue_resumes_the_schedule_at_k(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """rewind_schedule="continue" (OpenLTH, Frankle et al. 2020): run_cell trains the θ_k
    ticket for steps k..T−1 only, the learning rate following the cosine schedule from step k
    (lr·½(1+cos πt/T), computed here, k = round(0.05·T)); the default ("restart") runs the
    whole schedule from step 0. The option enters the method's identity only when set."""
    from prunekit.identity import canonical

    n_steps = steps_per_epoch(len(data.train))
    k = round(0.05 * n_steps)
    assert k >= 1
    schedule = [CONFIG.lr * 0.5 * (1 + math.cos(math.pi * i / n_steps)) for i in range(n_steps)]
    for seed, option, expected in ((21, "continue", schedule[k:]), (22, "restart", schedule)):
        spy.clear()
        spec = attrs.evolve(cell_spec("lottery_ticket_rewind", seed), method_options={"rewind_schedule": option})
        run_cell(spec)
        assert spy[-1]["lrs"] == pytest.approx(expected, rel=1e-12, abs=1e-15), option
    method = get_plugins().registry("method").get("lottery_ticket_rewind")
    assert "rewind_schedule" not in canonical(method)
    assert canonical(attrs.evolve(method, rewind_schedule="continue"))["rewind_schedule"] == "continue"
    with pytest.raises(ValueError, match="rewind='step'"):
        attrs.evolve(get_plugins().registry("method").get("lr_rewinding"), rewind_schedule="continue")


def test_hybrid_ticket_keeps_smart_ratio_counts_and_the_largest_trained_weights(
    data: DataBundle,
) -> None:
    """hybrid_ticket keeps exactly smart_ratio's count in every layer (asked of the registered
    schedule here), those are the largest |θ_T| of that layer, and the survivors are θ_T."""
    registry = get_plugins().registry("ratio_schedule")
    assert "smart_ratio" in registry, "the smart_ratio schedule is not registered"
    model, outcome = prune_with(data, "hybrid_ticket", 0.8)
    _, trained, _ = dense_copy(data)
    names = weight_names(model)
    counts = registry.get("smart_ratio")().allocate(outcome.layers, 0.2, {})
    assert outcome.masks.layer_kept() == counts
    for n in names:
        want = global_top(trained, [n], counts[n])
        assert torch.equal(outcome.masks[n], want[n]), f"{n}: not the top-{counts[n]} |θ_T|"
    assert_ticket_weights(model, outcome.masks, trained)
    # the budgets are not the ones a global threshold would give, so the test is sharp
    total = sum(trained[n].numel() for n in names)
    global_masks = global_top(trained, names, round(0.2 * total))
    assert {n: int(m.sum()) for n, m in global_masks.items()} != counts


def test_random_reinit_has_the_lottery_mask_on_a_fresh_init(data: DataBundle) -> None:
    """random_reinit has the lottery_ticket mask of the same seed, and its survivors (and
    biases) are the initialisation of seed + REINIT_SEED_OFFSET, not θ₀."""
    seed = 3
    cache = DenseCache()
    _, lottery = prune_with(data, "lottery_ticket", 0.8, seed=seed, cache=cache)
    model, outcome = prune_with(data, "random_reinit", 0.8, seed=seed, cache=cache)
    assert outcome.masks.equals(lottery.masks)
    fresh = state(build_model(MODEL, data, seed + REINIT_SEED_OFFSET))
    assert_ticket_weights(model, outcome.masks, fresh)
    theta0 = state(build_model(MODEL, data, seed))
    name = weight_names(model)[0]
    assert not torch.equal(fresh[name], theta0[name])


# --------------------------------------------------------------------------- dense cache
def test_dense_run_is_shared_by_every_method_of_the_family(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """One in-memory cache shared by prune calls of all six methods trains dense once: the first
    call misses, every later one hits (counted, and seen by the trainer spy), whatever its
    rewinding point; the shared run gives the same masks as a fresh one."""
    cache = DenseCache()
    masks = {}
    for i, method in enumerate(FAMILY):
        _, outcome = prune_with(data, method, 0.5, cache=cache, trainer=SpySGD())
        masks[method] = outcome.masks
        assert (cache.misses, cache.hits) == (1, i), f"after {method}"
    assert sum(c["density"] is None for c in spy) == 1  # one dense training, IMP retrains masked
    _, alone = prune_with(data, "lottery_ticket_rewind", 0.5)
    assert masks["lottery_ticket_rewind"].equals(alone.masks)


def test_two_methods_share_the_dense_run_in_memory(data: DataBundle) -> None:
    """lottery_ticket then lr_rewinding on one DenseCache: misses 1, hits 1, and the same mask."""
    cache = DenseCache()
    _, a = prune_with(data, "lottery_ticket", 0.8, cache=cache)
    assert (cache.misses, cache.hits) == (1, 0)
    _, b = prune_with(data, "lr_rewinding", 0.8, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert a.masks.equals(b.masks)


def test_disk_cache_is_hit_by_a_fresh_cache_object(
    data: DataBundle, tmp_path: Path, spy: list[dict[str, Any]]
) -> None:
    """A DenseCache on disk written by one object is hit by a new object in the same folder
    (late rewinding after lottery_ticket): no training, misses 0, hits 1, and the same θ_k as a
    run computed without any cache."""
    first = DenseCache(tmp_path)
    prune_with(data, "lottery_ticket", 0.8, cache=first, trainer=SpySGD())
    assert (first.misses, first.hits) == (1, 0)
    assert len(list(tmp_path.glob("dense-*.pt"))) == 1
    assert len(spy) == 1
    second = DenseCache(tmp_path)
    model, outcome = prune_with(
        data, "lottery_ticket_rewind", 0.8, cache=second, trainer=SpySGD()
    )
    assert (second.misses, second.hits) == (0, 1)
    assert len(spy) == 1, "the fresh cache trained again instead of reading the disk"
    fresh_model, fresh = prune_with(data, "lottery_ticket_rewind", 0.8)
    assert outcome.masks.equals(fresh.masks)
    for n, v in fresh_model.state_dict().items():
        assert torch.equal(model.state_dict()[n], v)


def test_a_stored_run_without_a_wanted_rewinding_point_is_trained_again(tmp_path: Path) -> None:
    """A cached run that did not keep a newly wanted step is a miss: it is computed again
    keeping the old and the new steps, replaces the stored one, and then serves both; a step
    past the end of training is the final state and needs no recomputation."""
    asked: list[list[int]] = []

    def compute(steps: list[int]) -> DenseRun:
        asked.append(list(steps))
        states = {s: {"w": torch.full((2,), float(s))} for s in steps}
        return DenseRun(
            states=states, final={"w": torch.full((2,), 10.0)}, steps=10,
            final_accuracy=0.5, best_accuracy=0.5,
        )

    spec = {"run": "rewind points"}
    first = DenseCache(tmp_path)
    first.get_or_compute(spec, compute, snapshots=[0])
    first.get_or_compute(spec, compute, snapshots=[0, 3])
    assert asked == [[0], [0, 3]] and (first.misses, first.hits) == (2, 0)
    again = DenseCache(tmp_path)
    run = again.get_or_compute(spec, compute, snapshots=[3, 0, 12])
    assert (again.misses, again.hits) == (0, 1) and len(asked) == 2
    assert torch.equal(run.at(3)["w"], torch.full((2,), 3.0))
    assert torch.equal(run.at(12)["w"], torch.full((2,), 10.0))


WORKER = """
import json, sys, time
from pathlib import Path
import torch
from prunekit.dense import DenseCache, DenseRun

root, name = Path(sys.argv[1]), sys.argv[2]
cache = DenseCache(root)

def compute(*_):
    with open(root / "computed.txt", "a") as f:
        f.write(name + "\\n")
    time.sleep(0.5)
    w = {"w": torch.arange(4.0)}
    return DenseRun(states={0: w}, final=w, steps=1, final_accuracy=1.0, best_accuracy=1.0)

(root / f"ready-{name}").touch()
while not (root / "go").exists():
    time.sleep(0.005)
run = cache.get_or_compute({"run": "same"}, compute, snapshots=[0])
assert torch.equal(run.final["w"], torch.arange(4.0))
(root / f"out-{name}.json").write_text(json.dumps([cache.misses, cache.hits]))
"""


def test_two_processes_asking_at_once_compute_the_run_once(tmp_path: Path) -> None:
    """Two processes ask one disk cache for the same run at the same moment (both released by
    one file); the file lock makes exactly one compute it (one line in the counter file) and
    the other read it from disk."""
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), name]) for name in "ab"
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{n}").exists() for n in "ab"):
            running = all(p.poll() is None for p in procs)
            assert running and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len((tmp_path / "computed.txt").read_text().splitlines()) == 1
    counts = sorted(tuple(json.loads((tmp_path / f"out-{n}.json").read_text())) for n in "ab")
    assert counts == [(0, 1), (1, 0)]


# ------------------------------------------------------------------------- pruning data
def test_half_dataset_changes_pretraining_data_but_not_final_training(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """Under half_dataset, lr_rewinding's dense run sees the stratified half (its size computed
    here) and is cached apart from the clean run; run_cell's final training gets the full train
    split. A half of another fraction is another dense run."""
    cache = DenseCache()
    seed = 2
    spec = cell_spec("lr_rewinding", seed)
    run_cell(spec, cache=cache)
    assert (cache.misses, cache.hits) == (1, 0)
    run_cell(attrs.evolve(spec, check="half_dataset"), cache=cache)
    assert (cache.misses, cache.hits) == (2, 0), "half_dataset reused the clean dense run"
    clean_dense, clean_final, half_dense, half_final = spy
    n = len(data.train)
    half = sum(round(0.5 * int((data.train.y == c).sum())) for c in range(data.num_classes))
    assert len(clean_dense["train_y"]) == n and len(clean_final["train_y"]) == n
    assert len(half_dense["train_y"]) == half < n
    assert half_final["density"] is not None
    assert torch.equal(half_final["train_x"], data.train.x)
    assert torch.equal(half_final["train_y"], data.train.y)
    index, _ = stratified_split(data.train.y, 0.5, make_generator(seed, "check", "half_dataset"))
    assert torch.equal(half_dense["train_x"], data.train.x[index])

    # another fraction is another dense run (the check's options are part of the key)
    recipe = resolve_method("lr_rewinding")
    quarter = get_plugins().registry("sanity_check").get("half_dataset")(fraction=0.25)
    model = build_model(MODEL, data, seed)
    training = Training(
        trainer=SpySGD(), config=CONFIG, model_name=MODEL, dataset_key="digits", cache=cache
    )
    # a quarter of the data may leave the classifier with no weight above the global threshold
    prune(
        model, data, recipe, 0.8, seed=seed, check=quarter, training=training,
        allow_collapse=True,
    )
    assert (cache.misses, cache.hits) == (3, 0), "fraction 0.25 reused the fraction-0.5 run"
    assert len(spy[-1]["train_y"]) < half


def test_random_labels_changes_pretraining_labels_but_not_final_training(
    data: DataBundle, spy: list[dict[str, Any]]
) -> None:
    """Under random_labels, lottery_ticket's dense run trains on the clean images with other
    labels, and run_cell's final training on the clean labels."""
    run_cell(attrs.evolve(cell_spec("lottery_ticket", seed=4), check="random_labels"))
    dense, final = spy
    assert dense["density"] is None and final["density"] is not None
    assert torch.equal(dense["train_x"], data.train.x)
    changed = float((dense["train_y"] != data.train.y).float().mean())
    assert 0.8 < changed < 0.97  # uniform labels over 10 classes differ ~90% of the time
    assert torch.equal(final["train_x"], data.train.x)
    assert torch.equal(final["train_y"], data.train.y)


def test_ticket_checks_reuse_the_clean_dense_run(data: DataBundle) -> None:
    """A check that only acts on the ticket (layerwise_rearrange) or the scores
    (score_inversion) does not change the dense run: it is a cache hit."""
    cache = DenseCache()
    prune_with(data, "lottery_ticket", 0.8, cache=cache)
    prune_with(data, "lottery_ticket", 0.8, cache=cache, check="layerwise_rearrange")
    prune_with(data, "lottery_ticket", 0.8, cache=cache, check="score_inversion")
    assert (cache.misses, cache.hits) == (1, 2)


# ------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("method", FAMILY)
def test_cli_prune_then_train_every_ticket(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: DataBundle
) -> None:
    """`prunekit prune --method M --sparsity 0.8` then `prunekit train --masks` exit 0 with JSON:
    the sparsity is the target within 1e-3 at both steps, the ticket weights written beside the
    masks are zero where pruned (θ₀ at the survivors for lottery_ticket), and the trained ticket
    beats chance (0.1): by far for the tickets that keep θ_T."""
    masks_file = tmp_path / "m.safetensors"
    common = ["--model", MODEL, "--device", "cpu", "--json"]
    prune_args = ["prune", "--method", method, "--sparsity", "0.8", "--epochs", "1"]
    files = ["--cache-dir", str(tmp_path / "cache"), "--out", str(masks_file)]
    code, out, err = _run([*prune_args, *files, *common], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["method"] == method
    assert abs(summary["sparsity"] - 0.8) < 1e-3
    masks, meta = Masks.load(masks_file)
    weights = masks_file.parent / meta["weights"]
    assert weights.is_file()
    from safetensors.torch import load_file

    saved = load_file(str(weights))
    for n, m in masks.items():
        assert bool((saved[n][~m] == 0).all())
    if method == "lottery_ticket":
        theta0 = state(build_model(MODEL, data, 0))
        for n, m in masks.items():
            assert torch.equal(saved[n][m], theta0[n][m])
    code, out, err = _run(["train", "--masks", str(masks_file), "--epochs", "2", *common], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert abs(result["sparsity"] - 0.8) < 1e-3
    assert result["model"] == MODEL and result["epochs"] == 2
    assert result["final_accuracy"] > 0.25  # chance is 0.1; a fresh re-init learns slowest
    if method in ("lr_rewinding", "hybrid_ticket"):  # they start from trained weights
        assert result["final_accuracy"] > 0.8
