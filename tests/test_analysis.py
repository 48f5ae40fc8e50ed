"""Diagnostics: Appendix B, Proposition 5.1, Fig. 4 callback, Tables 1-2, Appendix F, fan-in scheme."""

import io
import math
import os

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import analysis, clipping, keras, training
from tfq_pareto_cli import cli
from tfq_pareto.backend import tf
from tfq_pareto.models import mobilenet_v2_cifar

from conftest import build_mobilenet_like, build_plain_cnn


def test_clipping_constants_are_the_ones_in_use():
    constants = clipping.clipping_constants((4, 8))
    for bits, (value, spread) in constants.items():
        assert value == pytest.approx(tfq_pareto.CLIPPING_CONSTANTS[bits], abs=1e-4)
        assert spread > 0


def test_fig5_best_clip_grows_linearly_with_mean_abs(tmp_path):
    path = tmp_path / "fig5.png"
    means, clips = analysis.plot_clipping(str(path), num_bits=4, filters=60)
    assert path.stat().st_size > 1000
    slope = float(np.sum(means * clips) / np.sum(means * means))  # least squares through 0
    assert slope == pytest.approx(1 / tfq_pareto.CLIPPING_CONSTANTS[4], rel=0.15)
    assert np.corrcoef(means, clips)[0, 1] > 0.95


@pytest.mark.parametrize("d", [9, 36, 144, 1152])
@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_prop_5_1_against_monte_carlo(d, rho):
    rng = np.random.default_rng(d)
    n, sigma = 20_000, 0.5
    shared = rng.normal(size=(n, 1))
    w = sigma * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=(n, d)))
    empirical = np.abs(w).mean(axis=1).var(ddof=1)
    # Sampling error of a variance estimate: ~ var * sqrt(2 / n) (x2 for non-normal tails).
    predicted = analysis.mean_abs_variance(d, sigma, rho)
    assert abs(empirical - predicted) < 4 * 2 * predicted * math.sqrt(2 / n)


def test_prop_5_1_printed_form_needs_the_normalised_cross_moment():
    d, sigma = 9, 1.0
    correct = analysis.mean_abs_variance(d, sigma, 0.0)
    assert correct == pytest.approx(sigma**2 * (1 - 2 / math.pi) / d)
    assert analysis.printed_mean_abs_variance(d, sigma, analysis.cross_moment(0.0)) == pytest.approx(correct)
    assert analysis.printed_mean_abs_variance(d, sigma, 0.0) < 0  # rho read as a correlation
    assert analysis.cross_moment(1.0) == pytest.approx(1.0)  # identical weights: E|w|^2 = sigma^2
    # Depthwise filters (d = 9) have a much noisier scale estimate than d = 576.
    assert analysis.mean_abs_variance(9, 1.0) > 50 * analysis.mean_abs_variance(576, 1.0)


@pytest.mark.parametrize("bad", [{"d": 0, "sigma": 1.0}, {"d": 9, "sigma": -1.0}, {"d": 9, "sigma": 1.0, "rho": 1.5}])
def test_prop_5_1_bad_arguments(bad):
    with pytest.raises(ValueError, match="received"):
        analysis.mean_abs_variance(**bad)


@pytest.mark.slow
def test_variance_callback_one_value_per_depthwise_layer_per_epoch(tmp_path):
    model = tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 16, 16, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 10)).batch(16)
    recipe = training.Recipe(epochs=2, warmup_epochs=0, learning_rate=0.1, weight_decay=0.0)
    callback = analysis.MeanAbsVarianceCallback("depthwise")
    _, history = training.train(model, data, data, recipe, steps_per_epoch=4, verbose=0,
                                out_dir=str(tmp_path), callbacks=[callback])
    keys = sorted(k for k in history if k.startswith("mean_abs_var/"))
    assert len(keys) == 2 and "mean_abs_var/dw" in keys  # dw and the separable conv's depthwise half
    for key in keys:
        assert len(history[key]) == 2 and all(v > 0 and np.isfinite(v) for v in history[key])
    with open(os.path.join(tmp_path, "history.csv"), encoding="utf-8") as f:
        assert "mean_abs_var/dw" in f.readline()


def test_variance_callback_bad_arguments():
    with pytest.raises(ValueError, match="layer_types"):
        analysis.MeanAbsVarianceCallback("pointwise")
    with pytest.raises(ValueError, match="every_n_steps"):
        analysis.MeanAbsVarianceCallback(every_n_steps=0)


def test_sensitivity_table():
    results = [
        {"group": "depthwise", "setting": "high", "accuracy": 0.70},
        {"group": "depthwise", "setting": "low", "accuracy": 0.60},
        {"group": "depthwise", "setting": "low", "accuracy": 0.62},
        {"group": "depthwise", "setting": "low_grown", "accuracy": 0.65},
        {"group": "standard", "setting": "high", "accuracy": 0.70},
        {"group": "standard", "setting": "low", "accuracy": 0.68},
        {"group": "standard", "setting": "low_grown", "accuracy": 0.73},
    ]
    rows = analysis.sensitivity_table(results)
    dw, std = rows
    assert dw["group"] == "depthwise" and dw["acc_low"] == pytest.approx(0.61)
    assert dw["delta_acc_q"] == pytest.approx(-0.09) and dw["delta_acc_g"] == pytest.approx(0.04)
    assert dw["total"] == pytest.approx(-0.05) and std["total"] == pytest.approx(0.03)
    text = analysis.format_sensitivity_table(rows)
    assert "depthwise" in text and "-9.00" in text and "+3.00" in text
    with pytest.raises(ValueError, match="lacks results"):
        analysis.sensitivity_table(results[:2])


#: Table 2 of the paper: d -> (Delta Acc_Q, Delta Acc_G, Delta Acc, Acc_4bit), means over 3 runs.
TABLE2 = {
    "1x3x3": (-12.37, 8.72, -3.66, 56.24),
    "1x6x6": (-9.21, 6.79, -2.41, 55.63),
    "4x3x3": (-6.42, 7.20, 0.79, 58.51),
    "1x12x12": (-7.07, 4.49, -2.58, 53.31),
    "16x3x3": (-4.45, 5.40, 0.95, 60.97),
}


def test_sensitivity_table_reproduces_table_2_from_its_accuracies():
    """Accuracies implied by Table 2 (Acc_1bit = Acc_4bit + dQ, Acc_1bit,2x = Acc_1bit + dG),
    three seeds each spread +-0.5 around them: the table gives back Table 2's rows."""
    results = []
    for group, (dq, dg, _, acc4) in TABLE2.items():
        for seed, jitter in enumerate((-0.5, 0.0, 0.5)):
            low = acc4 + dq
            for setting, acc in (("high", acc4), ("low", low), ("low_grown", low + dg)):
                results.append({"group": group, "setting": setting, "seed": seed,
                                "accuracy": (acc + jitter) / 100})
    rows = analysis.sensitivity_table(results)
    assert [r["group"] for r in rows] == list(TABLE2)
    for row in rows:
        dq, dg, total, acc4 = TABLE2[row["group"]]
        assert 100 * row["delta_acc_q"] == pytest.approx(dq, abs=1e-6)
        assert 100 * row["delta_acc_g"] == pytest.approx(dg, abs=1e-6)
        assert 100 * row["total"] == pytest.approx(total, abs=0.02)  # the paper's rounding
        assert 100 * row["acc_high"] == pytest.approx(acc4, abs=1e-6)
        assert row["seeds"] == 3 and row["delta_acc_q_std"] == pytest.approx(0.0, abs=1e-9)
        assert 100 * row["acc_high_std"] == pytest.approx(0.5, abs=1e-6)  # sample std of -.5,0,.5
    text = analysis.format_sensitivity_table(rows)
    assert "16x3x3" in text and "-12.37 +- 0.00" in text and "56.24 +- 0.50" in text


def test_table2_configs_build_the_five_fan_ins():
    runs = analysis.table2_configs()
    assert len(runs) == 15 and [r["group"] for r in runs[::3]] == list(TABLE2)
    by_key = {(r["group"], r["setting"]): r["config"] for r in runs}
    assert by_key[("4x3x3", "high")].conv_bits == by_key[("4x3x3", "high")].dw_bits == 4
    assert by_key[("4x3x3", "low")].width_multiplier == 0.5 and by_key[("4x3x3", "low_grown")].width_multiplier == 1.0
    info = tfq_pareto.data.DatasetInfo("c", 100, (32, 32, 3), 1, 1, (0,) * 3, (1,) * 3)
    for group, expected_d in (("1x12x12", 144), ("16x3x3", 144)):
        model = tfq_pareto.experiment.build_float_model(by_key[(group, "low")], info)
        layer = model.get_layer("conv5_dw")
        kernel = layer.weights[0].shape
        assert kernel[0] * kernel[1] * (kernel[2] if group == "16x3x3" else 1) == expected_d
    with pytest.raises(ValueError, match="dw_fan_in must be 'CxKxK'.*received '4x3'"):
        tfq_pareto.experiment.RunConfig(model="vgg11", variant="C", dw_fan_in="4x3")
    with pytest.raises(ValueError, match="dw_fan_in applies to model 'vgg11' only"):
        tfq_pareto.experiment.RunConfig(model="resnet_cifar", dw_fan_in="4x3x3")


def test_memory_footprint_hand_computed(plain_cnn):
    footprint = tfq_pareto.memory_footprint(plain_cnn, conv_bits=1, act_bits=8)
    # Largest input: bn1/relu1/conv2 read 8x8x8 = 512; largest output: conv1/bn1/relu1 512.
    assert footprint.largest_input[1] == 512 and footprint.largest_output[2] == 512
    # Weights: conv1 (first) 8x9 at 8 bits, conv2 16x72 at 1 bit, logits (last) 10x256 at 8 bits.
    weight_bits = 8 * 72 + 1152 + 8 * 2560
    assert footprint.weight_bytes == math.ceil(weight_bits / 8) == 2776
    assert footprint.total_bytes == 1024 + 2776
    assert tfq_pareto.memory_footprint(plain_cnn, batch_size=4, conv_bits=1, act_bits=8).activation_bytes == 4096


def test_memory_footprint_counts_every_input_of_an_add():
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.layers.Add(name="add")([a, b])
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Flatten()(x)))
    footprint = tfq_pareto.memory_footprint(model, act_bits=32)
    assert footprint.largest_input == ("add", 128, 64)
    assert footprint.activation_bytes == (128 + 64) * 4


def test_memory_footprint_of_a_qat_model_reads_its_bits(plain_cnn):
    qat = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=4)
    footprint = tfq_pareto.memory_footprint(qat)
    assert footprint.act_bits == 4
    assert footprint.weight_bytes == 2776
    assert "inference memory" in str(tfq_pareto.summary(qat))


def test_fan_in_scheme_assigns_bits_by_fan_in():
    scheme = tfq_pareto.FanInPrecisionScheme(thresholds=((10, 4), (100, 2)), default_bits=1)
    qat = tfq_pareto.apply(build_mobilenet_like(), scheme=scheme)
    bits = {l.layer.name: l.quantize_config.num_bits for l in qat.layers
            if hasattr(getattr(l, "quantize_config", None), "num_bits")}
    assert bits["stem"] == 8 and bits["logits"] == 8  # first and last
    assert bits["expand"] == 4  # 1x1 over 8 channels: d = 8 < 10
    assert bits["dw"] == 4  # d = 9
    assert bits["project"] == 2  # d = 16
    assert bits["hidden"] == 2  # d = 12
    assert sorted(bits.values()).count(4) == 4  # + the separable conv's two halves (d = 9, 8)


@pytest.mark.slow  # whole-model work: ~20 s of the fast suite
def test_fan_in_scheme_equals_dual_precision_when_it_separates_depthwise():
    model = mobilenet_v2_cifar(1.0, 10)
    fan_in = tfq_pareto.apply(model, scheme=tfq_pareto.FanInPrecisionScheme(((10, 4),), 1))
    dual = tfq_pareto.apply(model, conv_bits=1, dw_bits=4)

    def configs(qat):
        return [(l.layer.name, l.quantize_config) for l in qat.layers
                if hasattr(getattr(l, "quantize_config", None), "num_bits")]

    assert configs(fan_in) == configs(dual) and len(configs(dual)) == 53


def test_fan_in_scheme_config_and_errors():
    scheme = tfq_pareto.FanInPrecisionScheme(((16, 8), (64, 4)), default_bits=2, act_bits=4)
    assert tfq_pareto.FanInPrecisionScheme.from_config(scheme.get_config()) == scheme
    with pytest.raises(ValueError, match="strictly increasing"):
        tfq_pareto.FanInPrecisionScheme(((64, 4), (16, 8)))
    with pytest.raises(ValueError, match="threshold bits must be .*received 9"):
        tfq_pareto.FanInPrecisionScheme(((16, 9),))
    with pytest.raises(ValueError, match="pairs"):
        tfq_pareto.FanInPrecisionScheme((16,))


def test_cli_analyze_clipping_and_memory(tmp_path):
    out = io.StringIO()
    assert cli.main(["analyze", "clipping", "--bits", "4", "--plot", str(tmp_path / "f.png")], out=out) == 0
    text = out.getvalue()
    assert "0.3309" in text and (tmp_path / "f.png").exists()
    out = io.StringIO()
    assert cli.main(["analyze", "memory", "--model", "resnet_cifar", "--conv-bits", "1",
                     "--act-bits", "4", "--num-classes", "10"], out=out) == 0
    assert "weights 34,800 B" in out.getvalue()
