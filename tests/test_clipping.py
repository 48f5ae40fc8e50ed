"""Appendix B: the clipping constants are reproducible and optimal."""

import numpy as np
import pytest

from tfq_pareto import clipping
from tfq_pareto.clipping import CLIPPING_CONSTANTS


@pytest.mark.parametrize("num_bits", clipping.UNIFORM_BITS)
def test_constants_are_recomputed_by_the_simulation(num_bits):
    value, spread = clipping.clipping_constant(num_bits)
    assert value == pytest.approx(clipping.CLIPPING_CONSTANTS[num_bits], abs=1e-4)
    assert 0 < spread < 0.1 * value


def test_constants_are_stable_across_seeds():
    for num_bits in (3, 4, 8):
        values = [clipping.clipping_constant(num_bits, seed=s)[0] for s in (1, 2)]
        # Seed-to-seed variation within 3% of the constant.
        assert np.ptp(values + [clipping.CLIPPING_CONSTANTS[num_bits]]) < 0.03 * values[0]


def test_constants_fall_with_bits():
    # More levels -> a wider clip relative to mean|W| -> a smaller c_b.
    values = [clipping.CLIPPING_CONSTANTS[b] for b in clipping.UNIFORM_BITS]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("num_bits", (3, 4, 8))
def test_error_at_constant_is_no_worse_than_at_nearby_clips(num_bits):
    rng = np.random.default_rng(123)
    w = rng.normal(0, 0.05, size=(256, 576))
    mean_abs = np.mean(np.abs(w), axis=1, keepdims=True)

    def error(c):
        q = clipping.uniform_quantize_numpy(w, mean_abs / c, num_bits)
        return np.sum((q - w) ** 2)

    best = error(clipping.CLIPPING_CONSTANTS[num_bits])
    for factor in (0.8, 0.9, 1.1, 1.25):
        assert best <= error(clipping.CLIPPING_CONSTANTS[num_bits] * factor)


def test_uniform_numpy_has_2b_minus_1_levels():
    w = np.linspace(-3, 3, 10001)[None, :]
    q = clipping.uniform_quantize_numpy(w, np.array([[2.0]]), 4)
    assert len(np.unique(q)) == 15
    assert q.max() == pytest.approx(2.0)


@pytest.mark.parametrize("bad", (1, 2, 9, 4.0, True, "4"))
def test_bad_bits_are_refused(bad):
    with pytest.raises(ValueError, match="num_bits"):
        clipping.clipping_constant(bad)


def _gaussian_quantization_mse(clip, num_bits, grid):
    """E[(Q_a(w) - w)^2] for w ~ N(0, 1) by quadrature; Q written out here, not imported."""
    w, density, dw = grid
    levels = 2 ** (num_bits - 1) - 1
    step = clip / levels
    q = np.round(np.clip(w, -clip, clip) / step) * step
    return float(np.sum((q - w) ** 2 * density) * dw)


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7, 8])
def test_clipping_constants_against_an_independent_gaussian_optimum(bits):
    """Appendix B: a_i = mean|W_i| / c_b minimises ||Q(W_i) - W_i||^2 for Gaussian weights.

    Independent of clipping.py: the MSE-optimal clip of N(0, 1) by quadrature over a
    fine grid, and E|w| = sqrt(2 / pi). The library's c_b (fitted on finite filters,
    d = 9..1152) lies within 4% of sqrt(2/pi) / a*, and its clip costs < 2% more error.
    """
    w = np.linspace(-12.0, 12.0, 240_001)
    grid = (w, np.exp(-w * w / 2) / np.sqrt(2 * np.pi), w[1] - w[0])
    clips = np.linspace(0.5, 6.0, 1101)
    errors = [_gaussian_quantization_mse(a, bits, grid) for a in clips]
    best_clip, best_error = clips[int(np.argmin(errors))], min(errors)
    c_independent = np.sqrt(2 / np.pi) / best_clip
    assert CLIPPING_CONSTANTS[bits] == pytest.approx(c_independent, rel=0.04)
    ours = _gaussian_quantization_mse(np.sqrt(2 / np.pi) / CLIPPING_CONSTANTS[bits], bits, grid)
    assert ours <= 1.02 * best_error
