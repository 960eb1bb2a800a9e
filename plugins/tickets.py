"""Lottery tickets, late rewinding, learning-rate rewinding, hybrid tickets and random
re-initialisation: recipes that score the weights of a dense-trained network."""

from __future__ import annotations

from prunekit import Method, hookimpl

LT = "Frankle, Carbin. The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks. ICLR 2019."
REWIND = (
    "Frankle, Dziugaite, Roy, Carbin. Linear Mode Connectivity and the Lottery Ticket Hypothesis. ICML 2020."
)
LRR = "Renda, Frankle, Carbin. Comparing Rewinding and Fine-tuning in Neural Network Pruning. ICLR 2020."
SU = "Su et al. Sanity-Checking Pruning Methods: Random Tickets can Win the Jackpot. NeurIPS 2020."
MA = "Ma et al. Sanity Checks for Lottery Tickets: Does Your Winning Ticket Really Win the Jackpot? NeurIPS 2021."

TICKETS: tuple[Method, ...] = (
    Method(
        name="lottery_ticket",
        description="one-shot global magnitude pruning of θ_T, weights reset to θ₀",
        family="initial",
        citation=LT,
        scorer="magnitude",
        schedule="global",
        pretrain=True,
        rewind="init",
    ),
    Method(
        name="lottery_ticket_rewind",
        description="one-shot global magnitude pruning of θ_T, weights rewound to θ_k (k = 5% of training)",
        family="partially_trained",
        citation=REWIND,
        scorer="magnitude",
        schedule="global",
        pretrain=True,
        rewind="step",
        rewind_point=0.05,
    ),
    Method(
        name="imp",
        description="iterative magnitude pruning: 20% of the remaining weights per round, reset to θ₀, retrain",
        family="initial",
        citation=LT,
        scorer="magnitude",
        schedule="global",
        pretrain=True,
        rewind="init",
        prune_fraction=0.2,
    ),
    Method(
        name="lr_rewinding",
        description="learning-rate rewinding: keep θ_T under the magnitude mask, retrain with the full schedule",
        family="partially_trained",
        citation=LRR,
        scorer="magnitude",
        schedule="global",
        pretrain=True,
        rewind="trained",
    ),
    Method(
        name="hybrid_ticket",
        description="smart-ratio layer budgets, top-|θ_T| inside each layer, then learning-rate rewinding",
        family="hybrid",
        citation=SU,
        scorer="magnitude",
        schedule="smart_ratio",
        pretrain=True,
        rewind="trained",
    ),
    Method(
        name="random_reinit",
        description="the lottery-ticket mask on a fresh initialisation from another seed",
        family="initial",
        citation=MA,
        scorer="magnitude",
        schedule="global",
        pretrain=True,
        rewind="reinit",
    ),
)


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    for method in TICKETS:
        register(method)
