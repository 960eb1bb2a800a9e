"""Named pruning recipes: pruning at initialization, random tickets and the dense reference."""

from __future__ import annotations

from prunekit import DENSE_METHOD, Method, hookimpl

SNIP = "Lee, Ajanthan, Torr. SNIP: Single-shot Network Pruning based on Connection Sensitivity. ICLR 2019."
GRASP = "Wang, Zhang, Grosse. Picking Winning Tickets Before Training by Preserving Gradient Flow. ICLR 2020."
SYNFLOW = (
    "Tanaka, Kunin, Yamins, Ganguli. Pruning neural networks without any data by iteratively "
    "conserving synaptic flow. NeurIPS 2020."
)
SU = "Su et al. Sanity-Checking Pruning Methods: Random Tickets can Win the Jackpot. NeurIPS 2020."
FRANKLE = (
    "Frankle, Dziugaite, Roy, Carbin. Pruning Neural Networks at Initialization: Why are We "
    "Missing the Mark? ICLR 2021."
)
EVCI = "Evci, Gale, Menick, Castro, Elsen. Rigging the Lottery: Making All Tickets Winners. ICML 2020."

METHODS: tuple[Method, ...] = (
    Method(name=DENSE_METHOD, description="no pruning: the dense reference", family=DENSE_METHOD),
    Method(
        name="snip",
        description="SNIP: |θ·∂L/∂θ| on a class-balanced batch, global threshold",
        family="initial",
        citation=SNIP,
        scorer="snip",
        schedule="global",
    ),
    Method(
        name="grasp",
        description="GraSP: keep the lowest −θ·Hg (gradient-flow preserving), global threshold",
        family="initial",
        citation=GRASP,
        scorer="grasp",
        schedule="global",
    ),
    Method(
        name="synflow",
        description="SynFlow: data-free synaptic flow, 100 rounds, exponential schedule",
        family="initial",
        citation=SYNFLOW,
        scorer="synflow",
        schedule="global",
        rounds=100,
    ),
    Method(
        name="magnitude_at_init",
        description="|θ₀| at initialisation, global threshold",
        family="initial",
        citation=FRANKLE,
        scorer="magnitude",
        schedule="global",
    ),
    Method(
        name="random_uniform",
        description="uniformly random mask, every layer at the target density",
        family="random",
        citation=SU,
        scorer="random",
        schedule="uniform",
    ),
    Method(
        name="random_erk",
        description="random mask with Erdős–Rényi-Kernel layer densities",
        family="random",
        citation=EVCI,
        scorer="random",
        schedule="erk",
    ),
    Method(
        name="random_ticket",
        description="random ticket: random positions inside smart-ratio layer budgets",
        family="random",
        citation=SU,
        scorer="random",
        schedule="smart_ratio",
    ),
)


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    for method in METHODS:
        register(method)
