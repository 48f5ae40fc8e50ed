"""Clipping constants for the uniform weight quantizer, Appendix B.

The uniform b-bit quantizer of Eq. (1) clips each filter W_i at ``a_i`` before
rounding. The paper finds, by simulating Gaussian weights, that the clip which
minimises the quantization error ``||Q_a(W_i) - W_i||^2`` is proportional to the
filter's mean absolute value, ``a_i = mean|W_i| / c_b``. This module reproduces
that simulation in NumPy (no TensorFlow) and holds the constants the quantizers use.

The constants in :data:`CLIPPING_CONSTANTS` are exactly what
``clipping_constant(b)`` returns with its default arguments, rounded to 4
decimals; ``tests/test_clipping.py`` recomputes them.
"""

import numpy as np

from tfq_pareto.checks import check_bits

#: Bits for which the uniform quantizer of Eq. (1) is used.
UNIFORM_BITS = (3, 4, 5, 6, 7, 8)

#: Standard deviations of the simulated Gaussian weights. The optimal ratio is
#: scale invariant; several sigmas show that it is.
DEFAULT_SIGMAS = (0.01, 0.1, 1.0)

#: Filter sizes d = C_in * K_w * K_h simulated: 3x3 depthwise, RGB 3x3 stem,
#: and 3x3 convs with 16, 64 and 128 input channels.
DEFAULT_FAN_INS = (9, 27, 144, 576, 1152)

#: c_b = mean|W| / a*, from ``clipping_constant(b)`` with its defaults.
CLIPPING_CONSTANTS = {
    3: 0.4185,
    4: 0.3309,
    5: 0.2817,
    6: 0.2494,
    7: 0.2251,
    8: 0.2085,
}


def uniform_levels(num_bits):
    """Number of positive levels L = 2^(b-1) - 1 of the symmetric quantizer, Eq. (1)."""
    return 2 ** (num_bits - 1) - 1


def _check_uniform_bits(num_bits):
    return check_bits("num_bits", num_bits, UNIFORM_BITS)


def uniform_quantize_numpy(w, clip, num_bits):
    """Eq. (1) in NumPy: ``round(clamp(w, -a, a) / s) * s`` with ``s = a / L``.

    Args:
      w: array (..., d): one filter per row.
      clip: array broadcastable to ``w``: the clip ``a`` of each row (> 0).
      num_bits: 3..8.

    Returns:
      The quantized array, same shape as ``w``.
    """
    step = clip / uniform_levels(num_bits)
    return np.round(np.clip(w, -clip, clip) / step) * step


def _relative_error(w, mean_abs, ratios, num_bits):
    """Sum over filters of ||Q(W_i) - W_i||^2 / ||W_i||^2 for each clip ratio a/mean|W|."""
    norms = np.sum(w * w, axis=1)
    errors = np.empty(len(ratios))
    for k, ratio in enumerate(ratios):
        q = uniform_quantize_numpy(w, ratio * mean_abs, num_bits)
        errors[k] = np.sum(np.sum((q - w) ** 2, axis=1) / norms)
    return errors


def optimal_clip_ratio(w, num_bits, *, coarse_step=0.05, fine_step=0.001, max_ratio=8.0):
    """The clip, as a multiple of mean|W_i|, minimising the summed error over filters.

    A coarse grid over ``(0, max_ratio]`` is refined around its best point.

    Args:
      w: array (filters, d) of weights, one filter per row.
      num_bits: 3..8.
      coarse_step, fine_step: grid spacing of the two passes.
      max_ratio: largest ratio a / mean|W| tried.

    Returns:
      The best ratio r* = a* / mean|W| (a float).
    """
    _check_uniform_bits(num_bits)
    w = np.asarray(w, dtype=np.float64)
    mean_abs = np.mean(np.abs(w), axis=1, keepdims=True)
    coarse = np.arange(coarse_step, max_ratio + coarse_step / 2, coarse_step)
    best = coarse[np.argmin(_relative_error(w, mean_abs, coarse, num_bits))]
    fine = np.arange(max(best - coarse_step, fine_step), best + coarse_step, fine_step)
    return float(fine[np.argmin(_relative_error(w, mean_abs, fine, num_bits))])


def clipping_constant(
    num_bits,
    *,
    sigmas=DEFAULT_SIGMAS,
    fan_ins=DEFAULT_FAN_INS,
    weights_per_setting=2**15,
    seed=0,
):
    """Simulates Appendix B: c_b = mean|W| / a* for zero-mean Gaussian weights.

    For every (sigma, d) pair, ``max(8, weights_per_setting // d)`` filters of d
    weights are drawn from N(0, sigma^2); the clip ratio r* = a*/mean|W_i| that
    minimises the summed relative error ``||Q(W_i) - W_i||^2 / ||W_i||^2`` is found
    by grid search, and c = 1 / r*.

    Departure from the paper: the paper fits a line through the per-filter best
    clips (Fig. 5); minimising the error summed over filters gives the same slope
    with much less noise for small d, where a single filter's optimum is erratic.

    Args:
      num_bits: 3..8.
      sigmas: standard deviations simulated.
      fan_ins: filter sizes d simulated.
      weights_per_setting: weights drawn per (sigma, d) pair.
      seed: NumPy seed; the result is deterministic given the arguments.

    Returns:
      (c_b, spread): the mean of c over all (sigma, d) settings and its standard
      deviation across them.
    """
    _check_uniform_bits(num_bits)
    rng = np.random.default_rng(seed)
    constants = []
    for sigma in sigmas:
        for d in fan_ins:
            filters = max(8, weights_per_setting // d)
            w = rng.normal(0.0, sigma, size=(filters, d))
            constants.append(1.0 / optimal_clip_ratio(w, num_bits))
    return float(np.mean(constants)), float(np.std(constants))


def clipping_constants(bits=UNIFORM_BITS, **kwargs):
    """``{b: (c_b, spread)}`` from :func:`clipping_constant` for each b in ``bits``."""
    return {b: clipping_constant(b, **kwargs) for b in bits}


def best_clips_per_filter(w, num_bits, *, ratios=None):
    """Per-filter optimal clip a*_i (the Fig. 5 scatter): argmin over a grid of a = r * mean|W_i|.

    Args:
      w: array (filters, d).
      num_bits: 3..8.
      ratios: candidate r = a / mean|W_i| (default 0.5..8 in steps of 0.01).

    Returns:
      (mean_abs, best_clip): two arrays (filters,).
    """
    _check_uniform_bits(num_bits)
    w = np.asarray(w, dtype=np.float64)
    ratios = np.arange(0.5, 8.0, 0.01) if ratios is None else np.asarray(ratios)
    mean_abs = np.mean(np.abs(w), axis=1, keepdims=True)
    errors = np.stack([
        np.sum((uniform_quantize_numpy(w, r * mean_abs, num_bits) - w) ** 2, axis=1)
        for r in ratios
    ])
    return mean_abs[:, 0], ratios[np.argmin(errors, axis=0)] * mean_abs[:, 0]
