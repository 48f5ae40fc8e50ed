"""Successive halving over the schedule at the budget (search.halving_search)."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from tfq_pareto import data, experiment, load_model, search, training
from tfq_pareto.backend import keras
from tfq_pareto.search import halving


def test_check_rungs_accepts_increasing_fractions_and_names_bad_values():
    assert halving.check_rungs(["0.25", 0.5]) == [0.25, 0.5]
    for bad in ([], [0.5, 0.25], [0.2, 0.2], [0], [1.0], [-0.1], ["half"]):
        with pytest.raises(ValueError, match="rungs must be fractions of the schedule"):
            halving.check_rungs(bad)


def test_rung_steps_round_fractions_of_the_schedule():
    # 3 epochs of 40 steps: a third is step 40, a ninth step 13 (120 / 9 = 13.3).
    assert halving.rung_steps([1 / 9, 1 / 3], 120) == [13, 40]
    assert halving.rung_steps([0.01], 120) == [1]  # never step 0
    with pytest.raises(ValueError, match=r"fall on steps \[1, 1\]"):
        halving.rung_steps([0.1, 0.2], 4)
    with pytest.raises(ValueError, match="before the last step"):
        halving.rung_steps([0.99], 12)


@pytest.mark.parametrize("pairs,rungs,expected", [(4, 2, 2), (7, 2, 3), (7, 1, 7), (4, 1, 4),
                                                  (16, 2, 4), (1, 1, 2), (9, 3, 3)])
def test_eta_for_is_the_smallest_rate_leaving_one_pair(pairs, rungs, expected):
    eta = halving.eta_for(pairs, rungs)
    assert eta == expected

    def left(rate):
        n = pairs
        for _ in range(rungs):
            n = max(1, math.ceil(n / rate))
        return n

    assert left(eta) == 1 and (eta == 2 or left(eta - 1) > 1)


def test_survivors_keep_ceil_n_over_eta():
    assert [halving.survivors(list(range(n)), 2) for n in (1, 2, 3, 4, 7)] == [1, 1, 2, 2, 4]
    assert halving.survivors(list(range(7)), 3) == 3


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": [(1, 4)]}, "bits is the precision set B"),
    ({"bits": [3, 9]}, "bits"),
    ({"eta": 1}, "eta"),
    ({"rungs": [0.5, 0.4]}, "rungs must be"),
    ({"seeds": 0}, "seeds"),
])
def test_bad_arguments_fail_before_any_training(tmp_path, kwargs, match):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    arguments = {"bits": [1, 8], "recipe": training.Recipe(epochs=1, warmup_epochs=0),
                 "out_dir": str(tmp_path), "datasets": _tiny(), **kwargs}
    with pytest.raises(ValueError, match=match):
        search.halving_search(base, 100_000, **arguments)
    assert not (tmp_path / halving.STATE_JSON).exists()


def _tiny(images=192):
    train, test, info = data.load("digits", image_size=16)
    return data.Datasets(train.take(images), test.take(96),
                         dataclasses.replace(info, num_train=images, num_test=96))


#: 192 images in batches of 32: 6 steps per epoch, 12 in the schedule.
RECIPE = training.Recipe(epochs=2, warmup_epochs=0, batch_size=32)


class _FitCounter:
    """Wraps keras.Model.fit: counts calls, notes each call's starting optimizer step, and
    can raise on call number ``fail_on`` (a process killed mid-search)."""

    def __init__(self, monkeypatch, fail_on=None):
        self.starts = []
        self.fail_on = fail_on
        real = keras.Model.fit
        counter = self

        def fit(model, *args, **kwargs):
            counter.starts.append(int(model.optimizer.iterations.numpy()))
            if counter.fail_on == len(counter.starts):
                raise RuntimeError("killed")
            return real(model, *args, **kwargs)

        monkeypatch.setattr(keras.Model, "fit", fit)


def _search(tmp_path, datasets, **kwargs):
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    budget = search.budget_of(base, datasets.info, width_multiplier=0.3, conv_bits=8)
    arguments = {"bits": [1, 2, 4, 8], "recipe": RECIPE, "out_dir": str(tmp_path),
                 "datasets": datasets, "rungs": (0.25, 0.5), **kwargs}
    return budget, search.halving_search(base, budget, **arguments)


@pytest.mark.slow
def test_halving_trains_4_then_2_then_1_and_each_goes_on_from_its_checkpoint(tmp_path,
                                                                               monkeypatch):
    datasets = _tiny()
    fits = _FitCounter(monkeypatch)
    budget, result = _search(tmp_path, datasets)
    assert result["eta_used"] == 2 and result["rung_steps"] == [3, 6]  # 0.25 and 0.5 of 12
    first, second = result["rungs"]
    # Every pair is ranked at the first rung by its accuracy there; the better half goes on.
    assert len(first["accuracies"]) == 4
    assert first["ranking"] == sorted(first["ranking"],
                                      key=lambda p: -first["accuracies"][str(p[0])])
    assert first["kept"] == first["ranking"][:2]
    assert second["ranking"][0] in first["kept"] and sorted(second["ranking"]) == sorted(
        first["kept"])
    assert second["kept"] == second["ranking"][:1]
    # One seed: no spread, so no verdict on the cuts; their margins are the rung's gaps.
    assert first["stds"] == {label: None for label in first["accuracies"]}
    cut = first["cut"]
    assert cut["pooled_std"] is None and cut["beyond_spread"] is None
    assert cut["margin"] == pytest.approx(first["accuracies"][cut["kept"]]
                                          - first["accuracies"][cut["dropped"]])
    assert [int(cut["kept"]), int(cut["dropped"])] == [p[0] for p in first["ranking"][1:3]]
    # 7 trainings, each starting where the pair's last one stopped: 4 at step 0, then
    # 2 at step 3, then the survivor at step 6; 4 x 3 + 2 x 3 + 1 x 6 = 24 steps in all.
    assert fits.starts == [0, 0, 0, 0, 3, 3, 6]
    steps = {(p["conv_bits"]): p["step"] for p in result["pairs"].values()}
    survivor = second["kept"][0][0]
    assert steps[survivor] == 12 and sum(steps.values()) == 24
    assert sorted(steps.values()) == [3, 3, 6, 12]
    # The answer: the survivor, widened to the budget, its model saved and as accurate as
    # its record says.
    (record,) = result["records"]
    best = result["best"]
    assert best.conv_bits == survivor == record.conv_bits and best.epochs_run == 2
    assert abs(best.size_bits - budget) <= 0.03 * budget
    model = load_model(best.model_file)
    training.compile_model(model, RECIPE, 6)
    test = data.pipeline(datasets.test, datasets.info, training=False, batch_size=32)
    assert model.evaluate(test, verbose=0)[1] == pytest.approx(best.accuracy, abs=1e-6)
    assert result["train_seconds"]["total"] > result["train_seconds"]["final"] > 0
    stored = json.loads((tmp_path / halving.RESULTS_JSON).read_text())
    assert stored["kind"] == "halving_search" and stored["best"]["conv_bits"] == survivor
    # Finished: run again, nothing trains.
    again = _search(tmp_path, datasets)[1]
    assert len(fits.starts) == 7 and again["best"].accuracy == best.accuracy


@pytest.mark.slow
def test_a_killed_halving_search_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    datasets = _tiny()
    _FitCounter(monkeypatch, fail_on=6)  # the second pair's training to the second rung
    with pytest.raises(RuntimeError, match="killed"):
        _search(tmp_path, datasets)
    monkeypatch.undo()
    fits = _FitCounter(monkeypatch)
    _, result = _search(tmp_path, datasets)
    # Only the two trainings left run, each from its pair's checkpoint (not from step 0).
    assert fits.starts == [3, 6]
    assert sorted(p["step"] for p in result["pairs"].values()) == [3, 3, 6, 12]
    with pytest.raises(ValueError, match="other settings.*rungs"):
        _search(tmp_path, datasets, rungs=(0.5,))


@pytest.mark.slow
def test_halving_with_seeds_ranks_on_the_mean_over_seeds(tmp_path):
    datasets = _tiny(96)
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits", seed=3)
    budget = search.budget_of(base, datasets.info, width_multiplier=0.3, conv_bits=8)
    recipe = training.Recipe(epochs=1, warmup_epochs=0, batch_size=16)  # 6 steps
    measured = []

    def measure(record, given):  # as --measure-fit's exporter: reads the finished model file
        measured.append(record)
        assert given.info == datasets.info and all(os.path.exists(f) for f in record.model_files)
        return {"macs": 1234, "flash_bytes": 5678}

    result = search.halving_search(base, budget, bits=[2, 8], recipe=recipe,
                                   out_dir=str(tmp_path), datasets=datasets, rungs=(0.5,),
                                   seeds=2, measure=measure)
    (rung,) = result["rungs"]
    for label, mean in rung["accuracies"].items():
        at_rung = [p["rungs"][0]["accuracy"] for p in result["pairs"].values()
                   if str(p["conv_bits"]) == label]
        assert len(at_rung) == 2 and mean == pytest.approx(sum(at_rung) / 2)
    # The cut: the kept pair's margin over the dropped one against their pooled seed std,
    # computed here from each seed's accuracy at the rung.
    at_rung = {label: [p["rungs"][0]["accuracy"] for p in result["pairs"].values()
                       if str(p["conv_bits"]) == label] for label in ("2", "8")}
    std = {label: float(np.std(v, ddof=1)) for label, v in at_rung.items()}
    assert rung["stds"] == pytest.approx(std)
    kept, dropped = str(rung["kept"][0][0]), str(rung["ranking"][1][0])
    cut = rung["cut"]
    assert (cut["kept"], cut["dropped"]) == (kept, dropped)
    assert cut["margin"] == pytest.approx(np.mean(at_rung[kept]) - np.mean(at_rung[dropped]))
    assert cut["pooled_std"] == pytest.approx(np.sqrt((std[kept] ** 2 + std[dropped] ** 2) / 2))
    assert cut["beyond_spread"] == (cut["margin"] > cut["pooled_std"])
    (record,) = result["records"]
    assert record.seeds == [3, 4] and len(record.accuracies) == 2
    assert record.accuracy == pytest.approx(sum(record.accuracies) / 2)
    assert [record.conv_bits] == rung["kept"][0][:1]
    # Only the finished pair is measured, and its record carries the measurement.
    assert len(measured) == 1 and (record.macs, record.flash_bytes) == (1234, 5678)


@pytest.mark.slow
def test_a_halving_pair_retraces_the_grid_trial_of_its_config_and_seed(tmp_path):
    """Same seed, same start and same batches as ``experiment.run`` (what the grid trains),
    though halving stops at the rung, evaluates, checkpoints and goes on: the finished pair
    is the grid's trial (weights and accuracy), and another seed is not."""
    datasets = _tiny(96)
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits", seed=5)
    budget = search.budget_of(base, datasets.info, width_multiplier=0.25, conv_bits=8)
    recipe = training.Recipe(epochs=2, warmup_epochs=0, batch_size=32)  # 3 steps an epoch
    # The rung at step 4 stops in the middle of the second epoch: the rest of it must be the
    # grid's batches, not a new epoch.
    result = search.halving_search(base, budget, bits=[8], recipe=recipe,
                                   out_dir=str(tmp_path / "halving"), datasets=datasets,
                                   rungs=(4 / 6,))
    assert result["rung_steps"] == [4]
    best = result["best"]
    grid = {}
    for seed in (5, 6):
        config = dataclasses.replace(base, conv_bits=8, width_multiplier=best.width_multiplier,
                                     seed=seed)
        grid[seed] = experiment.run(config, recipe, out_dir=str(tmp_path / f"grid_{seed}"),
                                    datasets=datasets, verbose=0)
    weights = [load_model(f).get_weights() for f in (best.model_file, grid[5].model_file,
                                                     grid[6].model_file)]
    assert len(weights[0]) == len(weights[1])
    for ours, theirs in zip(weights[0], weights[1]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert best.accuracy == pytest.approx(grid[5].accuracy, abs=1e-6)
    assert any(not np.allclose(ours, other) for ours, other in zip(weights[0], weights[2]))


def test_check_anneal_and_probe_steps_name_bad_values():
    assert halving.check_anneal(0) == 0.0 and halving.check_anneal(0.25) == 0.25
    for bad in (-0.1, 1.0, 2, "0.1", True, None):
        with pytest.raises(ValueError, match="anneal must be a fraction"):
            halving.check_anneal(bad)
    # 1,256 steps (the training floor's schedule): 0.06 of it is 75.36 -> 75 steps.
    assert halving.probe_steps(0.06, [314], 1256) == 75
    assert halving.probe_steps(0.0, [314], 1256) == 0
    assert halving.probe_steps(0.001, [3], 12) == 1  # never a 0-step probe
    with pytest.raises(ValueError, match="reaches the end of the 12-step schedule"):
        halving.probe_steps(0.5, [4, 8], 12)


def test_linear_anneal_goes_from_the_rungs_rate_to_zero():
    schedule = training.LinearAnneal(0.04, start_step=100, steps=4)
    # Written out: 0.04 * (1 - k / 4) for the k-th step after step 100, 0 from step 104.
    expected = [0.04, 0.04, 0.03, 0.02, 0.01, 0.0, 0.0]
    assert [float(schedule(s)) for s in (90, 100, 101, 102, 103, 104, 200)] == pytest.approx(
        expected)
    assert training.LinearAnneal(**schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        training.LinearAnneal(0.1, 0, 0)


@pytest.mark.slow
def test_an_annealed_rung_ranks_on_its_probe_and_the_pair_still_retraces_its_grid_trial(
        tmp_path):
    """With ``anneal``, each pair's probe (a copy annealed to lr 0 from the rung) is what the
    rung ranks, and it is thrown away: the finished pair is still the grid trial of its seed."""
    datasets = _tiny(96)
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits", seed=5)
    budget = search.budget_of(base, datasets.info, width_multiplier=0.25, conv_bits=8)
    recipe = training.Recipe(epochs=3, warmup_epochs=0, batch_size=32)  # 3 steps an epoch
    result = search.halving_search(base, budget, bits=[4, 8], recipe=recipe,
                                   out_dir=str(tmp_path / "halving"), datasets=datasets,
                                   rungs=(4 / 9,), anneal=2 / 9)
    assert result["rung_steps"] == [4] and result["anneal_steps"] == 2
    rung = result["rungs"][0]
    probes = {halving.pair_label(p["conv_bits"], p["dw_bits"]): p["probes"]
              for p in result["pairs"].values()}
    assert sorted(probes) == ["4", "8"]
    for label, runs in probes.items():
        assert [(p["step"], p["steps"]) for p in runs] == [(4, 2)]
        # The rate the grid's cosine (no warm-up, 9 steps) has reached at step 4.
        assert runs[0]["start_lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 9)) / 2,
                                                    rel=1e-5)
        assert rung["accuracies"][label] == pytest.approx(runs[0]["accuracy"])
    assert set(rung["unannealed"]) == {"4", "8"}
    # 2 pairs to step 4, the survivor on to 9, and 2 probes of 2 steps thrown away.
    assert result["steps"] == {"trained": 4 + 9, "probe": 4, "total": 17}
    best = result["best"]
    assert [best.conv_bits] == rung["kept"][0][:1]
    config = dataclasses.replace(base, conv_bits=best.conv_bits,
                                 width_multiplier=best.width_multiplier)
    grid = experiment.run(config, recipe, out_dir=str(tmp_path / "grid"), datasets=datasets,
                          verbose=0)
    for ours, theirs in zip(load_model(best.model_file).get_weights(),
                            load_model(grid.model_file).get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert best.accuracy == pytest.approx(grid.accuracy, abs=1e-6)
    # A rerun resumes: it trains and probes nothing again.
    again = search.halving_search(base, budget, bits=[4, 8], recipe=recipe,
                                  out_dir=str(tmp_path / "halving"), datasets=datasets,
                                  rungs=(4 / 9,), anneal=2 / 9)
    assert again["steps"] == result["steps"] and again["rungs"] == result["rungs"]
    with pytest.raises(ValueError, match="anneal"):
        search.halving_search(base, budget, bits=[4, 8], recipe=recipe,
                              out_dir=str(tmp_path / "halving"), datasets=datasets,
                              rungs=(4 / 9,), anneal=1 / 9)
