"""Search over width x precision with keras-tuner, Pareto fronts and dominance.

    tfq_pareto.search.pareto_front(points)      # non-dominated, smallest size first
    tfq_pareto.search.dominates(curve_a, curve_b)   # Definition 4.1
    tfq_pareto.search.dominates_beyond_spread(a, b)  # ... with margins above the seed spread
    tfq_pareto.search.sweep(config, bits=[1, 2, 4], budgets_bits=[...], recipe=..., out_dir=...)
    tfq_pareto.search.dual_precision_search(config, budget_bits, recipe=..., out_dir=...)
    tfq_pareto.search.proxy_search(config, budget_bits, recipe=..., out_dir=...)  # cheaper
    tfq_pareto.search.halving_search(config, budget_bits, recipe=..., out_dir=...)  # cheaper
    tfq_pareto.search.prior_search(config, budget_bits, recipe=..., out_dir=...)  # cheapest
    tfq_pareto.search.sensitivity_order(bits)  # Table 1's order of the pairs, no training
    tfq_pareto.search.rank_agreement(proxy_scores, grid_scores)  # Spearman's rho
"""

from tfq_pareto.search.front import (
    dominance_beyond_spread_matrix,
    dominance_matrix,
    dominates,
    dominates_beyond_spread,
    pareto_front,
    pooled_std,
    rank_agreement,
)
from tfq_pareto.search.halving import halving_search
from tfq_pareto.search.prior import prior_search, sensitivity_order
from tfq_pareto.search.run import (
    budget_of,
    dual_precision_search,
    proxy_search,
    replot,
    summarize_sweep,
    sweep,
)
from tfq_pareto.search.tuner import ORACLES, PrecisionTuner, make_oracle

__all__ = [
    "ORACLES",
    "PrecisionTuner",
    "budget_of",
    "dominance_beyond_spread_matrix",
    "dominance_matrix",
    "dominates",
    "dominates_beyond_spread",
    "dual_precision_search",
    "halving_search",
    "make_oracle",
    "pareto_front",
    "pooled_std",
    "prior_search",
    "proxy_search",
    "rank_agreement",
    "replot",
    "sensitivity_order",
    "summarize_sweep",
    "sweep",
]
