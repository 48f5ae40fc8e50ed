"""The sensitivity-based order of Table 1 and the search that trains only its head."""

import dataclasses
import json

import pytest

from tfq_pareto import data, experiment, search, training
from tfq_pareto.search import prior


def test_sensitivity_order_puts_fewest_conv_bits_first_and_depthwise_at_4_bits_or_more():
    # Written out from the rule (Sec. 4: fewer conv bits; Table 1: depthwise >= 4 bits first,
    # fewest first, then 2 before 1).
    dw = [4, 8, 2, 1]
    expected = [(c, d) for c in (1, 2, 4, 8) for d in dw]
    assert search.sensitivity_order([8, 4, 2, 1, 1]) == expected
    assert search.sensitivity_order([1, 8])[:2] == [(1, 8), (1, 1)]
    assert search.sensitivity_order([2, 1, 8], depthwise=False) == [(1, None), (2, None),
                                                                    (8, None)]
    assert prior.DEPTHWISE_MIN_BITS == 4
    with pytest.raises(ValueError, match="bits"):
        search.sensitivity_order([0, 4])


def test_prior_search_refuses_bad_arguments_before_any_work(tmp_path):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    for kwargs, match in (({"top_k": 0}, "top_k"), ({"seeds": 0}, "seeds"),
                          ({"bits": [3, 9]}, "bits")):
        with pytest.raises(ValueError, match=match):
            search.prior_search(base, 100_000, recipe=training.Recipe(epochs=1, warmup_epochs=0),
                                out_dir=str(tmp_path), **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_prior_search_trains_only_the_first_reachable_pair_of_the_order(tmp_path):
    train, test, info = data.load("digits", image_size=16)
    datasets = data.Datasets(train.take(128), test.take(64),
                             dataclasses.replace(info, num_train=128, num_test=64))
    base = experiment.RunConfig(model="mobilenet_v2_cifar", dataset="digits")
    budget = search.budget_of(base, info, width_multiplier=0.25, conv_bits=8, dw_bits=8)
    recipe = training.Recipe(epochs=1, warmup_epochs=0, batch_size=64)
    result = search.prior_search(base, budget, bits=[1, 8], recipe=recipe,
                                 out_dir=str(tmp_path), datasets=datasets, tolerance=0.05)
    # [1, 8] -> (1, 8) first: 1-bit convs, depthwise at 8 >= 4 bits.
    assert result["order"][0] == [1, 8] and result["trained"] == [[1, 8]]
    (record,) = [r for r in result["records"] if r.done]
    assert (record.conv_bits, record.dw_bits) == (1, 8) and result["best"] == record
    assert abs(record.size_bits - budget) <= 0.05 * budget
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["trained"] == [[1, 8]] and stored["kind"] == "prior_search"
