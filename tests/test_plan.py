"""The quantization plan: made once by apply, the one source of per-layer bits, saved with the model."""

import dataclasses

import pytest

import tfq_pareto
from tfq_pareto import keras, plan, saving, scheme, size
from tfq_pareto.backend import tfmot

from conftest import build_mobilenet_like, build_plain_cnn


@pytest.fixture(scope="module")
def qat():
    keras.utils.set_random_seed(0)
    return tfq_pareto.apply(build_mobilenet_like(10, (16, 16, 3)), conv_bits=1, dw_bits=4,
                            act_bits=4)


def test_apply_plans_every_weighted_layer_by_the_dual_precision_rule(qat):
    qplan = tfq_pareto.plan_of(qat)
    weighted = {l.name: l for l in qplan.weighted}
    # The model as conftest builds it: stem (first), expand, dw, project, the
    # separable conv split into a depthwise and a 1x1 conv (named by Keras'
    # counters), hidden, logits (last).
    named = {"stem": ("conv", 8), "expand": ("conv", 1), "dw": ("depthwise", 4),
             "project": ("conv", 1), "hidden": ("dense", 1), "logits": ("dense", 8)}
    assert {n: (weighted[n].kind, weighted[n].weight_bits) for n in named} == named
    split = sorted((l.kind, l.weight_bits) for n, l in weighted.items() if n not in named)
    assert split == [("conv", 1), ("depthwise", 4)]
    assert [n for n, l in weighted.items() if l.first] == ["stem"]
    assert [n for n, l in weighted.items() if l.last] == ["logits"]
    # Eq. (6) terms by hand: filters x C_in * K * K.
    assert (weighted["stem"].filters, weighted["stem"].fan_in) == (8, 3 * 3 * 3)
    assert (weighted["dw"].filters, weighted["dw"].fan_in) == (16, 3 * 3)
    assert (weighted["hidden"].filters, weighted["hidden"].fan_in) == (16, 12)
    assert weighted["logits"].act_bits == 8  # the logits stay at 8 bits
    split_conv = [l for n, l in weighted.items() if n not in named and l.kind == "conv"][0]
    assert split_conv.act_bits is None  # its ReLU quantizes instead
    inputs = [l for l in qplan if l.kind == "input"]  # named by Keras' counters
    assert len(inputs) == 1 and inputs[0].act_bits == 8
    assert qplan.activation_bits == [4, 8] and qplan.common_activation_bits == 4


def test_the_plan_matches_the_configs_tfmot_put_on_the_layers(qat):
    assert tfq_pareto.plan_of(qat) == plan.derive_plan(qat)


def test_size_reads_the_plan(qat):
    stored = tfq_pareto.plan_of(qat)
    assert tfq_pareto.model_size(qat) == stored.size_bits
    twice = plan.QuantizationPlan(tuple(
        dataclasses.replace(l, weight_bits=2 * l.weight_bits if l.weight_bits else None)
        for l in stored))
    try:
        plan.attach(qat, twice)  # size follows whatever plan the model carries
        assert tfq_pareto.model_size(qat) == 2 * stored.size_bits
        assert size._activation_bits(qat) == 4  # pylint: disable=protected-access
    finally:
        plan.attach(qat, stored)
    assert tfq_pareto.model_size(qat) == stored.size_bits


def test_apply_runs_the_layout_transforms_once(monkeypatch):
    calls = []
    real = scheme.layout

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scheme, "layout", counting)
    tfq_pareto.apply(build_plain_cnn(), conv_bits=2, act_bits=8)
    assert len(calls) == 1


def test_tfmot_quantize_apply_with_the_scheme_gives_the_same_model(qat):
    keras.utils.set_random_seed(0)
    model = build_mobilenet_like(10, (16, 16, 3))
    with tfq_pareto.quantize_scope():
        direct = tfmot.quantization.keras.quantize_apply(
            tfmot.quantization.keras.quantize_annotate_model(model),
            tfq_pareto.DualPrecisionScheme(1, 4, act_bits=4))

    def configs(model):  # in layer order (the split separable conv's names carry counters)
        return [(type(l.quantize_config).__name__, l.quantize_config.get_config())
                for l in model.layers if hasattr(l, "quantize_config")]

    assert configs(direct) == configs(qat) and len(configs(qat)) >= 14
    assert [dataclasses.replace(l, name="") for l in plan.derive_plan(direct)] == [
        dataclasses.replace(l, name="") for l in tfq_pareto.plan_of(qat)]


def test_a_registry_without_a_plan_refuses_weighted_layers():
    registry = scheme.DualPrecisionQuantizeRegistry(None, act_bits=4)
    with pytest.raises(ValueError, match="'c' \\(Conv2D\\) is not in the quantization plan"):
        registry.get_quantize_config(keras.layers.Conv2D(4, 3, name="c"))
    assert registry.get_quantize_config(keras.layers.ReLU()).get_output_quantizers(None)


@pytest.mark.parametrize("suffix", [".h5", ""])
def test_the_plan_is_saved_and_loaded_with_the_model(qat, tmp_path, suffix):
    path = str(tmp_path / f"model{suffix}")
    tfq_pareto.save_model(qat, path)
    assert saving._read_plan(path) == tfq_pareto.plan_of(qat)  # pylint: disable=protected-access
    loaded = tfq_pareto.load_model(path, compile=False)
    assert getattr(loaded, "_tfq_pareto_plan") == tfq_pareto.plan_of(qat)  # stored, not derived


def test_plan_values_are_checked_and_round_trip_through_json():
    layer = plan.LayerPlan("c", "conv", 1, 4, True, False, 8, 27)
    qplan = plan.QuantizationPlan((layer, plan.LayerPlan("r", "activation", act_bits=4)))
    assert plan.QuantizationPlan.from_json(qplan.to_json()) == qplan
    assert layer.size_bits == 8 * 27 * 1 and qplan.size_bits == 216
    with pytest.raises(ValueError, match="kind must be one of"):
        plan.LayerPlan("c", "pooling")
    with pytest.raises(ValueError, match="\\['c'\\] twice"):
        plan.QuantizationPlan((layer, layer))
    with pytest.raises(ValueError, match="not a version-1 quantization plan"):
        plan.QuantizationPlan.from_dict({"version": 99, "layers": []})
    with pytest.raises(KeyError, match="no layer 'x'"):
        qplan["x"]  # pylint: disable=pointless-statement


def test_attach_refuses_a_plan_for_another_model(qat):
    other = plan.QuantizationPlan((plan.LayerPlan("not_here", "conv", 1, 4, False, False, 1, 1),))
    with pytest.raises(ValueError, match="names layers \\['not_here'\\]"):
        plan.attach(qat, other)
