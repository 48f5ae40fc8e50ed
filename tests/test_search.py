"""Pareto front, Definition 4.1, sweeps and searches with keras-tuner."""

import dataclasses
import itertools
import json
import os

import pytest

from tfq_pareto import data, experiment, search, training


def test_pareto_front_smallest_first():
    points = [
        {"size_bits": 100, "accuracy": 0.60, "id": "a"},
        {"size_bits": 200, "accuracy": 0.55, "id": "dominated"},
        {"size_bits": 200, "accuracy": 0.70, "id": "b"},
        {"size_bits": 300, "accuracy": 0.70, "id": "same accuracy, larger"},
        {"size_bits": 400, "accuracy": 0.80, "id": "c"},
        {"size_bits": 50, "accuracy": 0.40, "id": "smallest"},
    ]
    assert [p["id"] for p in search.pareto_front(points)] == ["smallest", "a", "b", "c"]
    with pytest.raises(ValueError, match="size_bits"):
        search.pareto_front([{"accuracy": 0.5}])


def test_dominates_definition_4_1():
    low_bits = [(100, 0.60), (200, 0.70), (300, 0.75)]
    high_bits = [(150, 0.55), (250, 0.65), (400, 0.74)]
    assert search.dominates(low_bits, high_bits)
    assert not search.dominates(high_bits, low_bits)
    # Interpolation matters: compared at equal sizes, not point by point.
    assert search.dominates([(100, 0.5), (300, 0.9)], [(200, 0.69)])


def test_crossing_curves_dominate_neither_way():
    a = [(100, 0.50), (300, 0.80)]
    b = [(100, 0.60), (300, 0.70)]
    assert not search.dominates(a, b) and not search.dominates(b, a)
    matrix = search.dominance_matrix({"a": a, "b": b})
    assert matrix == {"a": {"a": None, "b": False}, "b": {"a": False, "b": None}}


def test_rank_agreement_is_spearmans_rho_over_the_common_keys():
    # Five pairs ranked 1..5 by the proxy and 2,1,4,3,5 by the grid: squared rank
    # differences sum to 4, so rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8 (the textbook
    # formula, exact without ties).
    proxy = {(1, 1): 0.10, (1, 4): 0.20, (1, 8): 0.30, (4, 4): 0.40, (8, 8): 0.50}
    grid = {(1, 1): 0.32, (1, 4): 0.31, (1, 8): 0.40, (4, 4): 0.35, (8, 8): 0.45,
            (4, 8): 0.50}  # (4, 8) has no proxy score: left out
    result = search.rank_agreement(proxy, grid)
    assert result["n"] == 5 and (4, 8) not in result["keys"]
    assert result["spearman"] == pytest.approx(0.8)
    # Exact two-sided p-value, counted over all 5! = 120 orders of the grid's ranks with
    # the textbook formula: those with |rho| >= 0.8.
    extreme = sum(abs(1 - 6 * sum((i + 1 - r) ** 2 for i, r in enumerate(order)) / 120) >= 0.8 - 1e-9
                  for order in itertools.permutations(range(1, 6)))
    assert result["p_value_method"] == "exact"
    assert result["p_value"] == pytest.approx(extreme / 120)
    reversed_grid = {k: -v for k, v in proxy.items()}
    perfect = search.rank_agreement(proxy, reversed_grid)
    assert perfect["spearman"] == pytest.approx(-1.0)
    assert perfect["p_value"] == pytest.approx(2 / 120)  # the two perfect orders of 120
    # Ten keys: the t approximation of scipy.stats.spearmanr.
    many = search.rank_agreement({k: k for k in range(10)}, {k: (k * 7) % 10 for k in range(10)})
    assert many["p_value_method"] == "t approximation" and many["n"] == 10


def test_rank_agreement_needs_three_keys_and_a_ranking():
    assert search.rank_agreement({1: 0.1, 2: 0.2}, {1: 0.3, 2: 0.1})["spearman"] is None
    flat = search.rank_agreement({1: 0.1, 2: 0.1, 3: 0.1}, {1: 0.3, 2: 0.1, 3: 0.2})
    assert flat["spearman"] is None and flat["n"] == 3
    missing = search.rank_agreement({1: 0.1, 2: None, 3: 0.3, 4: 0.2}, {1: 0.1, 2: 0.2, 3: 0.3})
    assert missing["n"] == 2 and missing["spearman"] is None


def test_non_overlapping_curves_give_a_clear_message():
    with pytest.raises(ValueError, match="do not overlap in size.*add points"):
        search.dominates([(100, 0.5), (200, 0.6)], [(300, 0.7), (400, 0.8)])
    assert search.dominance_matrix({"a": [(1, 0.1)], "b": [(2, 0.2)]})["a"]["b"] is None


def _tiny_datasets(image_size=16):
    train, test, info = data.load("digits", image_size=image_size)
    return data.Datasets(train.take(96), test.take(48),
                         dataclasses.replace(info, num_train=96, num_test=48))


RECIPE = training.Recipe(epochs=1, warmup_epochs=0, batch_size=48)


@pytest.mark.slow
def test_tiny_sweep_writes_tables_plots_front_and_dominance(tmp_path):
    base = experiment.RunConfig(model="resnet_cifar", depth=20, dataset="digits")
    result = search.sweep(base, bits=[1, 4], width_multipliers=[0.25, 0.5], recipe=RECIPE,
                          out_dir=str(tmp_path), datasets=_tiny_datasets())
    records = result["records"]
    assert len(records) == 4 and all(r.status == "COMPLETED" for r in records)
    sizes = {(r.conv_bits, r.width_multiplier): r.size_bits for r in records}
    assert sizes[(1, 0.5)] < sizes[(4, 0.5)] and sizes[(1, 0.25)] < sizes[(1, 0.5)]
    for name in ("results.json", "results.csv", "pareto.png"):
        assert (tmp_path / name).exists(), name
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert set(saved["dominance"]) == {"1-bit", "4-bit"} and saved["front"]
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 5
    assert search.replot(str(tmp_path)) == [str(tmp_path / "pareto.png")]


@pytest.mark.slow
def test_killed_sweep_resumes_and_trains_every_trial_once(tmp_path, monkeypatch):
    trained = []
    real_train = training.train

    def counting(*args, **kwargs):
        trained.append(kwargs["out_dir"])
        if len(trained) == 3:
            raise KeyboardInterrupt("killed during the third trial")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    base = experiment.RunConfig(model="resnet_cifar", depth=20, dataset="digits")
    kwargs = dict(bits=[1, 4], width_multipliers=[0.25, 0.5], recipe=RECIPE, out_dir=str(tmp_path),
                  datasets=_tiny_datasets())
    with pytest.raises(KeyboardInterrupt):
        search.sweep(base, **kwargs)
    result = search.sweep(base, **kwargs)
    assert len(trained) == 5  # 2 finished + 1 killed + the killed point again + the last
    points = [(r.conv_bits, r.width_multiplier) for r in result["records"]]
    assert sorted(points) == [(1, 0.25), (1, 0.5), (4, 0.25), (4, 0.5)]
    assert all(r.status == "COMPLETED" and r.tuner_id == "tuner0" for r in result["records"])
    again = search.sweep(base, **kwargs)  # finished: nothing trains
    assert len(trained) == 5 and len(again["records"]) == 4


@pytest.mark.slow
def test_tiny_grid_search_with_an_unreachable_pair(tmp_path):
    # VGG-11 variant A (Table 6; 32 px for its five poolings): a depthwise conv and
    # 4x cheaper to train than MobileNetV2-CIFAR (the README's search runs that one).
    base = experiment.RunConfig(model="vgg11", variant="A", dataset="digits")
    datasets = _tiny_datasets(image_size=32)
    budget = search.budget_of(base, datasets.info, width_multiplier=0.2, conv_bits=8, dw_bits=8)
    result = search.dual_precision_search(base, budget, bits=[1, 8], recipe=RECIPE,
                                          out_dir=str(tmp_path), datasets=datasets)
    records = {(r.conv_bits, r.dw_bits): r for r in result["records"]}
    assert set(records) == {(1, 1), (1, 8), (8, 1), (8, 8)}
    assert records[(8, 8)].status == "COMPLETED"
    for r in records.values():
        if r.status == "FAILED":
            assert "budget unreachable" in r.message
    assert result["best"] is not None and result["best"].accuracy >= 0
    for name in ("results.json", "results.csv", "pareto.png", "grid.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"bits": [], "width_multipliers": [1.0]}, "at least one precision"),
        ({"bits": [0, 4], "width_multipliers": [1.0]}, "bits must be an int in 1..8; received 0"),
        ({"bits": [1, 9], "width_multipliers": [1.0]}, "received 9"),
        ({"bits": [1], "width_multipliers": [0.0]}, "width_multipliers must be numbers > 0"),
        ({"bits": [1], "widths": [0.0]}, "width_multipliers must be numbers > 0"),  # old name
        ({"bits": [1], "widths": [1.0], "width_multipliers": [1.0]}, "received both"),
        ({"bits": [1]}, "exactly one of width_multipliers and budgets_bits"),
    ],
)
def test_bad_sweep_inputs_fail_before_training(tmp_path, kwargs, match):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    with pytest.raises(ValueError, match=match):
        search.sweep(base, recipe=RECIPE, out_dir=str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)


def test_bad_search_inputs(tmp_path):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    with pytest.raises(ValueError, match="budget_bits must be"):
        search.dual_precision_search(base, -5, recipe=RECIPE, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="oracle must be one of"):
        search.make_oracle("annealing", None)


def test_cli_sweep_and_search_flags(capsys):
    from tfq_pareto_cli import cli

    with pytest.raises(SystemExit):
        cli.main(["sweep", "--model", "resnet_cifar", "--bits", "1,12", "--widths", "1", "--out", "x"])
    assert "bits must be ints in 1..8; received 12" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["search", "--model", "resnet_cifar", "--out", "x"])
    assert "--budget-kib" in capsys.readouterr().err


@pytest.mark.slow
def test_a_chief_and_two_workers_complete_a_search_together(tmp_path):
    import socket
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    out = str(tmp_path / "search")
    script = os.path.join(os.path.dirname(__file__), "distributed_search.py")
    processes = {}
    import time

    for tuner_id in ("chief", "tuner0", "tuner1"):
        if tuner_id == "tuner0":  # workers connect once the chief's oracle listens
            deadline = time.time() + 300
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(1)
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port))
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, script, out], env=env, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"{tuner_id}.log", "w"))
    try:
        for tuner_id, process in processes.items():
            assert process.wait(timeout=900) == 0, (tmp_path / f"{tuner_id}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    assert sorted(r["conv_bits"] for r in results["records"]) == [1, 2, 4, 8]
    # Every record names the worker that trained it: both workers did, the chief none.
    workers = sorted(r["tuner_id"] for r in results["records"])
    assert set(workers) == {"tuner0", "tuner1"}, workers
    assert len(workers) == 4


@pytest.mark.parametrize("name,cls,limit", [
    ("grid", "ResumableGridOracle", ("max_trials", 2)),
    ("random", "RandomSearchOracle", ("max_trials", 2)),
    ("bayesian", "BayesianOptimizationOracle", ("max_trials", 2)),
    ("hyperband", "HyperbandOracle", ("max_epochs", 3)),
])
def test_every_oracle_can_be_made_and_proposes_a_trial_in_the_space(name, cls, limit, tmp_path):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Choice("conv_bits", [1, 4])
    oracle = search.make_oracle(name, hp, max_trials=2, max_epochs=3)
    assert type(oracle).__name__ == cls  # the oracle asked for, not just some kt.Oracle
    assert (oracle.objective.name, oracle.objective.direction) == ("val_accuracy", "max")
    assert getattr(oracle, limit[0]) == limit[1]
    oracle._set_project_dir(str(tmp_path), "p")  # pylint: disable=protected-access
    trial = oracle.create_trial("tuner0")
    assert trial.status == "RUNNING"
    assert trial.hyperparameters.values["conv_bits"] in (1, 4)
    if name == "hyperband":
        assert 1 <= trial.hyperparameters.values["tuner/epochs"] <= 3


@pytest.mark.slow
def test_random_oracle_search(tmp_path):
    base = experiment.RunConfig(model="resnet_cifar", depth=20, dataset="digits")
    datasets = _tiny_datasets()
    budget = search.budget_of(base, datasets.info, width_multiplier=0.25, conv_bits=8)
    result = search.dual_precision_search(base, budget, bits=[1, 2, 4, 8], oracle="random",
                                          max_trials=2, recipe=RECIPE, out_dir=str(tmp_path),
                                          datasets=datasets)
    assert 1 <= len(result["records"]) <= 2 and result["best"] is not None


@pytest.mark.slow
def test_proxy_search_trains_the_proxy_grid_then_only_its_best_pair(tmp_path, monkeypatch):
    trained = []
    real_train = training.train

    def counting(*args, **kwargs):
        trained.append(kwargs["out_dir"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    # ResNet-20 (no depthwise convs: one precision per point), the cheapest family to
    # train; the README's `search --oracle proxy` line runs it on VGG-11 B's pairs (dw convs).
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    datasets = _tiny_datasets()
    budget = search.budget_of(base, datasets.info, width_multiplier=0.3, conv_bits=8)
    kwargs = dict(bits=[2, 8], recipe=RECIPE, out_dir=str(tmp_path), datasets=datasets,
                  proxy_fraction=0.5)
    result = search.proxy_search(base, budget, **kwargs)
    proxy = [r for r in result["proxy_records"] if r.done]
    assert len(result["proxy_records"]) == 2 and proxy
    # Every proxy pair is narrower than the budget allows: at most half of it.
    assert all(r.size_bits <= 0.5 * budget * 1.03 for r in proxy)
    ranked = sorted(proxy, key=lambda r: r.accuracy, reverse=True)
    assert result["ranking"] == [[r.conv_bits, r.dw_bits] for r in ranked]
    # Then only the proxy's best pair that the full budget can take (a pair whose
    # channel counts jump over the budget is skipped).
    (final,) = result["records"]
    skipped = result["unreachable_at_budget"]
    assert [final.conv_bits, final.dw_bits] == result["ranking"][len(skipped)]
    assert result["ranking"][:len(skipped)] == skipped
    assert abs(final.size_bits - budget) <= 0.03 * budget  # the default tolerance
    assert result["best"].trial_id == final.trial_id
    assert len(trained) == len(proxy) + 1
    assert result["train_seconds"]["proxy"] > 0 and result["train_seconds"]["final"] > 0
    assert (tmp_path / "results.json").exists() and (tmp_path / "proxy" / "grid.png").exists()
    again = search.proxy_search(base, budget, **kwargs)  # finished: nothing trains
    assert len(trained) == len(proxy) + 1 and again["best"].accuracy == final.accuracy


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"proxy_fraction": 0}, r"proxy_fraction must be a number in \(0, 1\]; received 0"),
        ({"proxy_fraction": 1.5}, "received 1.5"),
        ({"top_k": 0}, "top_k must be an int >= 1; received 0"),
        ({"bits": [3, 16]}, "received 16"),
    ],
)
def test_bad_proxy_search_inputs_fail_before_training(tmp_path, kwargs, match):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    with pytest.raises(ValueError, match=match):
        search.proxy_search(base, 1000, recipe=RECIPE, out_dir=str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)
