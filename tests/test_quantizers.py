"""Per-filter weight quantizers, Eqs. (1), (3), (4), (5)."""

import numpy as np
import pytest

from tfq_pareto import PerFilterWeightQuantizer, quantize_weights
from tfq_pareto.backend import tf
from tfq_pareto.clipping import CLIPPING_CONSTANTS

BITS = (1, 2, 3, 4, 8)

# kernel shape, depthwise?, filter axes, number of filters
KERNELS = {
    "conv2d": ((3, 3, 6, 5), False),
    "depthwise": ((3, 3, 6, 2), True),
    "dense": ((20, 7), False),
}


def _filters(q, depthwise):
    """Rows = filters: (n_filters, fan_in)."""
    q = np.asarray(q)
    if depthwise:
        kh, kw, c, m = q.shape
        return q.reshape(kh * kw, c * m).T
    return q.reshape(-1, q.shape[-1]).T


def _max_levels(bits):
    return {1: 2, 2: 3}.get(bits, 2**bits - 1)


@pytest.mark.parametrize("kind", sorted(KERNELS))
@pytest.mark.parametrize("bits", BITS)
def test_levels_per_filter(kind, bits):
    shape, depthwise = KERNELS[kind]
    w = np.random.default_rng(1).normal(0, 0.1, size=shape).astype("float32")
    q = quantize_weights(tf.constant(w), bits, depthwise=depthwise).numpy()
    assert q.shape == w.shape
    for row in _filters(q, depthwise):
        assert len(np.unique(row)) <= _max_levels(bits)
    # Filters are quantized independently: scales differ between filters.
    scales = [np.max(np.abs(row)) for row in _filters(q, depthwise)]
    assert len(np.unique(np.round(scales, 7))) > 1


def test_depthwise_is_per_channel_not_per_tensor():
    # Channel 0 tiny, channel 1 large: a per-tensor scale would zero channel 0.
    w = np.zeros((3, 3, 2, 1), "float32")
    w[..., 0, 0] = np.linspace(-1e-3, 1e-3, 9).reshape(3, 3)
    w[..., 1, 0] = np.linspace(-10, 10, 9).reshape(3, 3)
    q = quantize_weights(tf.constant(w), 4, depthwise=True).numpy()
    assert np.count_nonzero(q[..., 0, 0]) >= 6
    np.testing.assert_allclose(np.abs(q[..., 0, 0]).max(), 1e-3, rtol=0.35)


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_binary_is_sign_times_mean_abs(kind):
    shape, depthwise = KERNELS[kind]
    w = np.random.default_rng(2).normal(0, 1, size=shape).astype("float32")
    w.flat[0] = 0.0  # sign(0) = +1
    q = quantize_weights(tf.constant(w), 1, depthwise=depthwise).numpy()
    axes = (0, 1) if depthwise else tuple(range(w.ndim - 1))
    expected = np.where(w >= 0, 1.0, -1.0) * np.mean(np.abs(w), axis=axes, keepdims=True)
    np.testing.assert_allclose(q, expected, rtol=1e-5)
    assert q.flat[0] > 0


def test_binary_hand_made_filter():
    w = tf.constant([[0.5], [-1.0], [0.0], [2.5]])  # dense: one filter of 4 weights
    q = quantize_weights(w, 1).numpy().ravel()
    np.testing.assert_allclose(q, [1.0, -1.0, 1.0, 1.0])


def test_ternary_hand_made_filter():
    # mean|W| = 1.0, threshold 0.7.
    w = tf.constant([[0.69], [-0.7], [2.0], [-0.61], [1.0]])
    q = quantize_weights(w, 2).numpy().ravel()
    np.testing.assert_allclose(q, [0.0, -1.0, 1.0, 0.0, 1.0], rtol=1e-6)


def test_ternary_twn_scale_is_mean_of_kept_entries():
    w = tf.constant([[0.69], [-0.7], [2.0], [-0.61], [1.0]])
    q = quantize_weights(w, 2, ternary_scale="twn").numpy().ravel()
    kept = (0.7 + 2.0 + 1.0) / 3
    np.testing.assert_allclose(q, [0.0, -kept, kept, 0.0, kept], rtol=1e-6)


@pytest.mark.parametrize("bits", (3, 4, 8))
def test_uniform_matches_eq1(bits):
    w = np.random.default_rng(3).normal(0, 0.2, size=(3, 3, 4, 6)).astype("float32")
    q = quantize_weights(tf.constant(w), bits).numpy()
    mean_abs = np.mean(np.abs(w), axis=(0, 1, 2), keepdims=True)
    clip = mean_abs / CLIPPING_CONSTANTS[bits]
    step = clip / (2 ** (bits - 1) - 1)
    expected = np.round(np.clip(w, -clip, clip) / step) * step
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-7)
    codes = q / step
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert np.abs(codes).max() <= 2 ** (bits - 1) - 1 + 1e-3


@pytest.mark.parametrize("kind", sorted(KERNELS))
@pytest.mark.parametrize("bits", BITS)
def test_gradient_is_straight_through(kind, bits):
    shape, depthwise = KERNELS[kind]
    w = tf.Variable(np.random.default_rng(4).normal(0, 3, size=shape).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_weights(w, bits, depthwise=depthwise))
    grad = tape.gradient(loss, w).numpy()
    np.testing.assert_array_equal(grad, np.ones(shape, "float32"))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(
    "w",
    [
        np.zeros((3, 3, 2, 4), "float32"),  # all-zero filters
        np.full((1, 1, 1, 4), -2.0, "float32"),  # one element per filter
        np.array([[3e38], [-3e38], [1e-38], [0.0]], "float32").reshape(1, 1, 4, 1),  # huge
        np.array([1e30, -1e30, 5.0, 0.0], "float32").reshape(1, 1, 4, 1),
    ],
    ids=["zeros", "one-element", "float-max", "huge"],
)
def test_no_nan_or_inf(bits, w):
    q = quantize_weights(tf.constant(w), bits).numpy()
    assert np.all(np.isfinite(q))
    if not np.any(w):
        assert not np.any(q)
    var = tf.Variable(w)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_weights(var, bits))
    assert np.all(np.isfinite(tape.gradient(loss, var).numpy()))


def test_one_element_filter():
    w = np.array([[-2.0, 0.5, 3.0]], "float32")  # dense, 3 filters of 1 weight
    for bits in (1, 2):  # sign * mean|W| is the weight itself
        np.testing.assert_allclose(quantize_weights(tf.constant(w), bits).numpy(), w, rtol=1e-6)
    for bits in (3, 4, 8):  # Eq. (1): the nearest level of the grid a_i * k / L
        q = quantize_weights(tf.constant(w), bits).numpy()
        clip = np.abs(w) / CLIPPING_CONSTANTS[bits]
        step = clip / (2 ** (bits - 1) - 1)
        np.testing.assert_allclose(q, np.round(w / step) * step, rtol=1e-5)
        assert np.all(np.sign(q) == np.sign(w))


@pytest.mark.parametrize("bad", (0, 9, -1, 1.5, 4.0, True, "4", None))
def test_bad_bits_raise_with_the_value(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(".", r"\.")):
        PerFilterWeightQuantizer(bad)
    with pytest.raises(ValueError, match="num_bits"):
        quantize_weights(tf.zeros((3, 3)), bad)


def test_bad_ternary_scale():
    with pytest.raises(ValueError, match="'median'"):
        PerFilterWeightQuantizer(2, ternary_scale="median")


def test_quantizer_config_round_trip_and_eq():
    quantizer = PerFilterWeightQuantizer(2, depthwise=True, ternary_scale="twn")
    clone = PerFilterWeightQuantizer.from_config(quantizer.get_config())
    assert clone == quantizer
    assert clone != PerFilterWeightQuantizer(2, depthwise=False, ternary_scale="twn")
    assert clone != PerFilterWeightQuantizer(4, depthwise=True)
    assert quantizer.build((3, 3, 1, 1), "w", None) == {}


def test_quantizer_call_matches_function():
    w = tf.constant(np.random.default_rng(5).normal(size=(3, 3, 4, 2)).astype("float32"))
    quantizer = PerFilterWeightQuantizer(4, depthwise=True)
    np.testing.assert_array_equal(
        quantizer(w, training=True, weights={}).numpy(),
        quantize_weights(w, 4, depthwise=True).numpy(),
    )


# --- Activation quantizer -----------------------------------------------------------

from tfq_pareto import ActivationQuantizer, fake_quantize_activations, keras  # noqa: E402
from tfq_pareto.backend import tfmot  # noqa: E402
from tfq_pareto.quantizers import nudged_range, ramped_decay  # noqa: E402


def _host():
    """A layer to hold a quantizer's range variables."""
    layer = keras.layers.Layer()
    layer.build(None)
    return layer


def _native_gradient(x, minimum, maximum, bits, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.quantization.fake_quant_with_min_max_vars(x, minimum, maximum, num_bits=bits)
    return tape.gradient(y, x, output_gradients=dy)


@pytest.mark.parametrize("bits", (2, 4, 8))
@pytest.mark.parametrize("low,high", [(-6.0, 6.0), (-0.37, 2.9), (0.0, 5.0), (-1.3, 0.0)])
def test_fake_quantize_activations_matches_tf_forward_and_input_gradient(bits, low, high):
    rng = np.random.default_rng(bits)
    x = tf.constant(rng.uniform(low - 2, high + 2, size=(4, 6, 6, 5)).astype("float32"))
    dy = tf.constant(rng.normal(size=x.shape).astype("float32"))
    minimum, maximum = tf.constant(low), tf.constant(high)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fake_quantize_activations(x, minimum, maximum, bits, non_negative=low == 0.0)
    grad = tape.gradient(y, x, output_gradients=dy).numpy()
    expected = tf.quantization.fake_quant_with_min_max_vars(x, minimum, maximum, num_bits=bits)
    np.testing.assert_array_equal(y.numpy(), expected.numpy())
    np.testing.assert_array_equal(grad, _native_gradient(x, minimum, maximum, bits, dy).numpy())
    nudged_low, nudged_high = (float(v) for v in nudged_range(minimum, maximum, bits))
    assert nudged_low <= 0.0 <= nudged_high
    inside = (x.numpy() > nudged_low) & (x.numpy() < nudged_high)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(grad[~inside], 0.0)
    np.testing.assert_array_equal(grad[inside], dy.numpy()[inside])


def test_fake_quantize_activations_has_no_nan_for_an_empty_range():
    x = tf.constant([[-1.0, 0.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fake_quantize_activations(x, tf.constant(0.0), tf.constant(0.0), 4, non_negative=True)
    grad = tape.gradient(y, x)
    assert np.isfinite(y.numpy()).all() and np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("bits", (4, 8))
def test_activation_quantizer_equals_tfmot_moving_average_quantizer(bits):
    """With init_from_batch=False: tfmot's variables, EMA updates, outputs and input gradients,
    step after step."""
    ours, theirs = ActivationQuantizer(bits, init_from_batch=False), tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
        num_bits=bits, per_axis=False, symmetric=False, narrow_range=False)
    host = _host()
    our_vars, their_vars = ours.build((None, 5), "ours", host), theirs.build((None, 5), "theirs", host)
    assert [v.name.split("/")[-1] for v in our_vars.values()] == ["ours_min:0", "ours_max:0"]
    assert not any(v.trainable for v in our_vars.values())
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = tf.constant(rng.normal(0.5, 2.0, size=(16, 5)).astype("float32"))
        dy = tf.constant(rng.normal(size=(16, 5)).astype("float32"))
        outputs, grads = [], []
        for quantizer, variables in ((ours, our_vars), (theirs, their_vars)):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = quantizer(x, training=True, weights=variables)
            outputs.append(y.numpy())
            grads.append(tape.gradient(y, x, output_gradients=dy).numpy())
        np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)
        np.testing.assert_array_equal(grads[0], grads[1])
        for key in ("min_var", "max_var"):
            assert float(our_vars[key]) == pytest.approx(float(their_vars[key]), abs=1e-6)
    assert float(our_vars["max_var"]) < 6.0 and float(our_vars["min_var"]) > -6.0
    inference = ours(x, training=False, weights=our_vars)
    np.testing.assert_array_equal(inference.numpy(), tf.quantization.fake_quant_with_min_max_vars(
        x, our_vars["min_var"], our_vars["max_var"], num_bits=bits).numpy())


def _relu6_then_quantize(quantizer, variables, x):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = quantizer(tf.nn.relu6(x), training=True, weights=variables)
        return y, tape.gradient(y, x)

    return step, step(x)


def test_non_negative_quantizer_fuses_with_the_relu_and_equals_relu_then_quantize():
    x = tf.constant(np.random.default_rng(1).normal(1.0, 4.0, size=(8, 4, 4, 3)).astype("float32"))
    quantizer = ActivationQuantizer(4, non_negative=True)
    variables = quantizer.build(x.shape, "output", _host())
    assert float(variables["min_var"]) == 0.0
    step, (y, grad) = _relu6_then_quantize(quantizer, variables, x)
    # The range: min stays 0; max starts at the first batch's ReLU6 output max.
    assert float(variables["min_var"]) == 0.0
    maximum = float(tf.reduce_max(tf.nn.relu6(x)))
    assert float(variables["max_var"]) == pytest.approx(maximum, rel=1e-6)
    relu6 = tf.nn.relu6(x)
    expected = tf.quantization.fake_quant_with_min_max_vars(relu6, 0.0, maximum, num_bits=4)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)
    # Gradient: ReLU6's mask times the fake-quant's: 0 < x <= max.
    x_np = x.numpy()
    np.testing.assert_array_equal(grad.numpy(), ((x_np > 0) & (x_np < maximum)).astype("float32"))
    # The fake-quant reads the ReLU6's input: nothing consumes the Relu6 op's output.
    graph = step.get_concrete_function(x).graph
    fake_quants = [op for op in graph.get_operations() if op.type == "FakeQuantWithMinMaxVars"]
    assert fake_quants and all(op.inputs[0].op.type != "Relu6" for op in fake_quants)


def test_non_negative_quantizer_gives_the_same_values_eagerly():
    x = tf.constant(np.random.default_rng(2).normal(1.0, 4.0, size=(8, 4, 4, 3)).astype("float32"))
    graph_q, eager_q = ActivationQuantizer(4, non_negative=True), ActivationQuantizer(4, non_negative=True)
    graph_vars, eager_vars = graph_q.build(x.shape, "g", _host()), eager_q.build(x.shape, "e", _host())
    _, (y_graph, grad_graph) = _relu6_then_quantize(graph_q, graph_vars, x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_eager = eager_q(tf.nn.relu6(x), training=True, weights=eager_vars)
    np.testing.assert_allclose(y_eager.numpy(), y_graph.numpy(), atol=1e-6)
    np.testing.assert_array_equal(tape.gradient(y_eager, x).numpy(), grad_graph.numpy())
    assert float(eager_vars["max_var"]) == pytest.approx(float(graph_vars["max_var"]))


@pytest.mark.parametrize("non_negative", [False, True])
def test_activation_range_starts_from_the_first_batch_then_follows_the_ema(non_negative):
    quantizer = ActivationQuantizer(4, non_negative=non_negative)
    variables = quantizer.build((None, 6), "act", _host())
    # Before any training step: tfmot's [-6, 6] (min 0 after a ReLU).
    assert (float(variables["min_var"]), float(variables["max_var"])) == (
        0.0 if non_negative else -6.0, 6.0)
    rng = np.random.default_rng(3)
    first = rng.uniform(0.1 if non_negative else -0.3, 0.5, size=(8, 6)).astype("float32")
    quantizer(tf.constant(first), training=True, weights=variables)
    assert float(variables["updates_var"]) == 1.0
    assert float(variables["max_var"]) == pytest.approx(first.max(), rel=1e-5)
    assert float(variables["min_var"]) == pytest.approx(0.0 if non_negative else first.min(),
                                                        rel=1e-5, abs=1e-7)
    # Then the EMA of each batch's range, its decay ramping as TF's ExponentialMovingAverage
    # with num_updates: min(0.999, (1 + n) / (10 + n)), n = 1 at the second step.
    second = rng.uniform(0.1, 2.0, size=(8, 6)).astype("float32")
    quantizer(tf.constant(second), training=True, weights=variables)
    decay = 2 / 11
    expected_max = decay * first.max() + (1 - decay) * second.max()
    assert float(variables["max_var"]) == pytest.approx(expected_max, rel=1e-5)
    assert float(variables["updates_var"]) == 2.0
    # Inference does not move the range.
    quantizer(tf.constant(second * 10), training=False, weights=variables)
    assert float(variables["max_var"]) == pytest.approx(expected_max, rel=1e-5)


def test_ramped_decay_values():
    """TF's ExponentialMovingAverage(num_updates) rule after a first update that copies."""
    for n, expected in ((0, 0.0), (1, 2 / 11), (10, 11 / 20), (90, 91 / 100), (8991, 0.999),
                        (10**6, 0.999)):
        assert float(ramped_decay(tf.constant(float(n)))) == pytest.approx(expected, rel=1e-6)


def test_activation_quantizer_config_round_trip_and_bad_bits():
    quantizer = ActivationQuantizer(4, non_negative=True)
    assert ActivationQuantizer.from_config(quantizer.get_config()) == quantizer
    assert quantizer != ActivationQuantizer(4) and quantizer != ActivationQuantizer(8, non_negative=True)
    assert quantizer != ActivationQuantizer(4, non_negative=True, init_from_batch=False)
    restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(quantizer))
    assert restored == quantizer
    for bad in (1, 9, 4.0):
        with pytest.raises(ValueError, match=f"received {bad!r}"):
            ActivationQuantizer(bad)
