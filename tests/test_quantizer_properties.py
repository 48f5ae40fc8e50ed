"""Property tests (hypothesis) of the per-filter quantizers, Eq. (1)-(5), over random shapes and magnitudes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfq_pareto import CLIPPING_CONSTANTS, quantize_weights
from tfq_pareto.backend import tf

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def kernels(draw):
    """(w, depthwise): a conv, depthwise or dense kernel, values from several magnitudes."""
    kind = draw(st.sampled_from(["conv", "depthwise", "dense"]))
    if kind == "dense":
        shape = (draw(st.integers(1, 24)), draw(st.integers(1, 6)))
    else:
        k = draw(st.sampled_from([1, 3, 5]))
        shape = (k, k, draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    scale = 10.0 ** draw(st.integers(-30, 30))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape)
    if draw(st.booleans()):  # some exactly-zero weights, possibly whole filters
        w[rng.random(shape) < 0.3] = 0.0
    return (w * scale).astype("float32"), kind == "depthwise"


def _filters(x, depthwise):
    """(filters, fan_in): per output filter; per (channel, multiplier) for depthwise."""
    if depthwise:
        kh, kw, c, m = x.shape
        return x.reshape(kh * kw, c * m).T
    return x.reshape(-1, x.shape[-1]).T


def _levels_bound(bits):
    return 2 if bits == 1 else 3 if bits == 2 else 2 ** bits - 1


@SETTINGS
@given(kernels(), st.integers(1, 8))
def test_levels_finite_and_signs(kernel, bits):
    w, depthwise = kernel
    q = quantize_weights(tf.constant(w), bits, depthwise=depthwise).numpy()
    assert q.shape == w.shape and np.all(np.isfinite(q))
    for wf, qf in zip(_filters(w, depthwise), _filters(q, depthwise)):
        assert np.unique(qf).size <= _levels_bound(bits)
        if bits == 1:  # Eq. (4): sign(W) (sign(0) = +1) times a non-negative scale
            assert np.all((qf >= 0) == (wf >= 0)) or np.all(qf == 0)
        else:  # never the opposite sign
            assert np.all(np.sign(qf) * np.sign(wf) >= 0)


@SETTINGS
@given(kernels())
def test_binary_scale_is_mean_abs_eq4(kernel):
    w, depthwise = kernel
    q = quantize_weights(tf.constant(w), 1, depthwise=depthwise).numpy()
    for wf, qf in zip(_filters(w, depthwise), _filters(q, depthwise)):
        np.testing.assert_allclose(np.abs(qf), np.mean(np.abs(wf.astype(np.float64))), rtol=1e-4)


@SETTINGS
@given(kernels())
def test_ternary_threshold_and_scale_eq3(kernel):
    w, depthwise = kernel
    q = quantize_weights(tf.constant(w), 2, depthwise=depthwise).numpy()
    for wf, qf in zip(_filters(w, depthwise), _filters(q, depthwise)):
        mean_abs = np.mean(np.abs(wf.astype(np.float64)))
        if mean_abs == 0:
            assert np.all(qf == 0)
            continue
        ratio = np.abs(wf) / mean_abs
        clear = np.abs(ratio - 0.7) > 1e-3  # away from the threshold's rounding edge
        kept = ratio >= 0.7
        assert np.all(qf[clear & ~kept] == 0)
        np.testing.assert_allclose(np.abs(qf[clear & kept]), mean_abs, rtol=1e-4)


@SETTINGS
@given(kernels(), st.integers(3, 8))
def test_uniform_grid_and_clip_eq1(kernel, bits):
    w, depthwise = kernel
    q = quantize_weights(tf.constant(w), bits, depthwise=depthwise).numpy().astype(np.float64)
    top = 2 ** (bits - 1) - 1
    for wf, qf in zip(_filters(w, depthwise), _filters(q, depthwise)):
        clip = np.mean(np.abs(wf.astype(np.float64))) / CLIPPING_CONSTANTS[bits]
        if clip == 0:
            assert np.all(qf == 0)
            continue
        step = clip / top
        codes = qf / step
        np.testing.assert_allclose(codes, np.round(codes), atol=2e-3)  # on the grid k * step
        assert np.all(np.abs(codes) <= top + 2e-3)  # |Q| <= a_i
        # Within half a step of the clipped weight (Eq. 1 rounds to the nearest level).
        assert np.all(np.abs(qf - np.clip(wf, -clip, clip)) <= step * (0.5 + 2e-3))


@SETTINGS
@given(kernels(), st.integers(1, 8))
def test_gradient_is_straight_through_eq5(kernel, bits):
    w, depthwise = kernel
    var = tf.Variable(w)
    upstream = tf.constant(np.random.default_rng(0).standard_normal(w.shape).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_weights(var, bits, depthwise=depthwise) * upstream)
    np.testing.assert_array_equal(tape.gradient(loss, var).numpy(), upstream.numpy())


@SETTINGS
@given(kernels())
def test_binary_is_idempotent(kernel):
    # Only Eq. (4): the data-dependent scales of Eq. (1) and (3) move when applied twice.
    w, depthwise = kernel
    once = quantize_weights(tf.constant(w), 1, depthwise=depthwise)
    twice = quantize_weights(once, 1, depthwise=depthwise).numpy()
    np.testing.assert_allclose(twice, once.numpy(), rtol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_degenerate_filters_stay_finite(bits):
    """All-zero filters, a one-element filter, float32-edge and denormal magnitudes."""
    cases = [
        np.zeros((3, 3, 2, 4), "float32"),
        np.full((1, 1, 1, 1), -2.5, "float32"),
        np.full((3, 3, 1, 2), 3.0e38, "float32"),
        np.random.default_rng(0).standard_normal((3, 3, 2, 2)).astype("float32") * 1e-40,
        np.array([[[[3.0e38]], [[-3.0e38]], [[1e-45]]]], "float32"),
    ]
    for w in cases:
        q = quantize_weights(tf.constant(w), bits).numpy()
        assert np.all(np.isfinite(q)), (bits, w.ravel()[:3])
