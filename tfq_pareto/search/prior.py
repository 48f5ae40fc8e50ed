"""A sensitivity-based order of the DualPrecision pairs, and a search that trains only its head.

The paper's per-layer-type sensitivity (Table 1, Sec. 5) orders the (conv_bits, dw_bits)
pairs before anything is trained:

* standard (and pointwise) convs have a large fan-in per output filter (C_in x K x K), so
  quantizing them harder costs less accuracy than the width it buys brings back
  (Delta Acc_Q + Delta Acc_G > 0, Sec. 4): fewer conv bits come first;
* depthwise convs have a fan-in of K x K per filter; Table 1 finds them
  quantization-unfriendly below 4 bits (1-bit depthwise convs: Delta Acc_Q about 4x
  larger while they hold about 2% of the model's size), so depthwise bits of at least
  :data:`DEPTHWISE_MIN_BITS` come first, fewest first (they cost almost no size), then
  the lower ones, most first.

:func:`sensitivity_order` is that order; :func:`prior_search` widens the first
``top_k`` pairs that reach the budget and trains only those (at ``top_k=1``, one
training: 1 / (2 x pairs) of a 2-seed grid). It measures nothing on the user's model,
so it can only be as right as the paper's findings are on that model and schedule; how
often it is, against 2-seed grids, is measured in BENCHMARKS.md ("A sensitivity-based
order"). Use it as the cheapest first guess and check it with a grid or
:func:`tfq_pareto.search.halving_search` where the training budget allows.
"""

import dataclasses
import os

from tfq_pareto import checks, training
from tfq_pareto.records import jsonable
from tfq_pareto.search.run import (
    DEFAULT_BITS,
    RESULTS_JSON,
    _check_bits_list,
    _prepare,
    _reachable,
    _train_seconds,
    sweep,
)

#: Table 1: depthwise convs lose much more accuracy below this many bits than growing
#: the network wins back (the paper's 4-bit vs 1-bit comparison of variant C).
DEPTHWISE_MIN_BITS = 4


def sensitivity_order(bits, depthwise=True):
    """The (conv_bits, dw_bits) pairs of ``bits`` x ``bits``, the paper's likeliest best first.

    Conv bits ascending; within them, depthwise bits >= :data:`DEPTHWISE_MIN_BITS`
    ascending, then those below it descending. Without depthwise convs: the bits
    ascending, as ``(bits, None)``.

    E.g. ``sensitivity_order([1, 2, 4, 8])[:3] == [(1, 4), (1, 8), (1, 2)]``.
    """
    bits = sorted(set(_check_bits_list(bits)))
    if not depthwise:
        return [(b, None) for b in bits]
    dw_order = ([b for b in bits if b >= DEPTHWISE_MIN_BITS]
                + sorted((b for b in bits if b < DEPTHWISE_MIN_BITS), reverse=True))
    return [(conv, dw) for conv in bits for dw in dw_order]


def prior_search(base_config, budget_bits, *, bits=DEFAULT_BITS, recipe, out_dir, top_k=1,
                 datasets=None, data_dir=None, image_size=16, strategy=None, verbose=0,
                 tolerance=0.03, measure=None, seeds=1):
    """The best of the first ``top_k`` pairs of :func:`sensitivity_order` at ``budget_bits``.

    The pairs no width brings to ``budget_bits`` within ``tolerance`` are skipped (and
    listed); the first ``top_k`` others are widened to the budget and trained with
    ``recipe`` (``seeds`` times each, as :func:`tfq_pareto.search.sweep`), which is the
    grid's trial of each: a grid run with the same seeds can be set against it pair by
    pair. Writes ``out_dir/final/`` (resumable) and ``out_dir/results.json``.

    Returns:
      ``{"best": TrialRecord, "order": [[conv_bits, dw_bits], ...], "trained": [...],
      "unreachable_at_budget": [...], "records": [...], "train_seconds": s}``.
    """
    checks.check_int("top_k", top_k)
    checks.check_positive("budget_bits", budget_bits)
    checks.check_int("seeds", seeds)
    _check_bits_list(bits)
    datasets, depthwise = _prepare(base_config, recipe, datasets, data_dir, image_size)
    order = sensitivity_order(bits, depthwise)
    chosen, unreachable = [], []
    for conv, dw in order:
        if len(chosen) == top_k:
            break
        if _reachable(base_config, datasets.info, conv, dw, budget_bits, tolerance):
            chosen.append((conv, dw))
        else:
            unreachable.append([conv, dw])
    if not chosen:
        raise ValueError(f"no pair of bits {sorted(set(bits))} reaches {budget_bits:.0f} bits "
                         f"within tolerance {tolerance}: {unreachable}; raise tolerance")
    final = sweep(base_config, bits=[p if depthwise else p[0] for p in chosen],
                  budgets_bits=[budget_bits], recipe=recipe,
                  out_dir=os.path.join(out_dir, "final"), datasets=datasets, strategy=strategy,
                  verbose=verbose, tolerance=tolerance, measure=measure, seeds=seeds)
    finished = [r for r in final["records"] if r.done]
    best = max(finished, key=lambda r: r.accuracy) if finished else None
    result = {"kind": "prior_search", "budget_bits": budget_bits, "top_k": top_k,
              "seeds": seeds, "recipe": dataclasses.asdict(recipe), "best": best,
              "order": [list(p) for p in order], "trained": [list(p) for p in chosen],
              "unreachable_at_budget": unreachable, "records": final["records"],
              "train_seconds": _train_seconds(final["records"])}
    training.write_json(os.path.join(out_dir, RESULTS_JSON), jsonable(result))
    return result
