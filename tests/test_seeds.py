"""Seeds in every comparison: runs seeded, points trained with N seeds (mean and spread),
and Definition 4.1 told apart from noise."""

import csv
import dataclasses
import json
import os
import statistics

import numpy as np
import pytest

from tfq_pareto import TrialRecord, data, experiment, load_model, search, training
from tfq_pareto.backend import tf
from tfq_pareto.records import combine_seed_runs, combine_seeds, sample_std
from tfq_pareto.search import front
from tfq_pareto_cli import cli

RECIPE = training.Recipe(epochs=1, warmup_epochs=0, batch_size=32)


def _tiny_datasets(n=32):
    train, test, info = data.load("digits", image_size=8)
    return data.Datasets(train.take(n), test.take(32),
                         dataclasses.replace(info, num_train=n, num_test=32))


def _record(seed, accuracy, model_file):
    return TrialRecord(conv_bits=1, width_multiplier=0.5, seed=seed, size_bits=100,
                       accuracy=accuracy, loss=None if accuracy is None else 1.0 - accuracy,
                       train_seconds=2.0,
                       model_file=model_file)


def test_combined_seeds_hold_each_value_the_mean_and_the_sample_spread():
    runs = [_record(0, 0.50, "a.h5"), _record(1, 0.56, "b.h5"), _record(2, 0.47, "c.h5")]
    combined = combine_seeds(runs)
    assert combined.accuracies == [0.50, 0.56, 0.47] and combined.seeds == [0, 1, 2]
    assert combined.accuracy == pytest.approx(statistics.mean([0.50, 0.56, 0.47]))
    assert combined.accuracy_std == pytest.approx(statistics.stdev([0.50, 0.56, 0.47]))
    assert combined.loss == pytest.approx(statistics.mean([0.50, 0.44, 0.53]))
    assert combined.train_seconds == 6.0 and combined.seed is None
    # The file kept as the point's model is the most accurate seed's; all are listed.
    assert combined.model_file == "b.h5" and combined.model_files == ["a.h5", "b.h5", "c.h5"]
    single = combine_seeds(runs[:1])
    assert single.accuracy == 0.50 and single.accuracy_std is None and single.seed == 0
    with pytest.raises(ValueError, match="at least one record"):
        combine_seeds([])
    with pytest.raises(ValueError, match="must be finished"):
        combine_seeds([runs[0], _record(1, None, "x.h5")])


def test_sample_std_is_the_ddof_1_spread_and_unknown_for_one_seed():
    values = [0.3195, 0.3469, 0.3412]
    assert sample_std(values) == pytest.approx(statistics.stdev(values))
    assert sample_std(iter([1.0, 3.0])) == pytest.approx(2 ** 0.5)  # any iterable
    assert sample_std([0.5]) is None
    with pytest.raises(ValueError, match="at least one value"):
        sample_std([])


def test_seed_runs_from_separate_processes_combine_per_point():
    def point(seed, bits, budget, width, accuracy, status="COMPLETED"):
        return TrialRecord(conv_bits=bits, width_multiplier=width, seed=seed, size_bits=100,
                           budget_bits=budget, accuracy=accuracy, status=status,
                           loss=None if accuracy is None else 0.5, train_seconds=1.0,
                           model_file=f"{seed}_{bits}_{budget}.h5")

    seed0 = [point(0, 1, 1000, 0.9, 0.40), point(0, 4, 1000, 0.3, 0.31),
             point(0, 1, 4000, 1.8, 0.52)]
    seed1 = [point(1, 4, 1000, 0.3, 0.35), point(1, 1, 1000, 0.9, 0.44),  # another order
             point(1, 1, 4000, 1.8, None, status="FAILED")]
    combined = combine_seed_runs([seed0, seed1])
    assert [(r.conv_bits, r.budget_bits) for r in combined] == [(1, 1000), (4, 1000), (1, 4000)]
    one, four, failed = combined
    assert one.accuracies == [0.40, 0.44] and one.seeds == [0, 1]
    assert one.accuracy == pytest.approx(0.42)
    assert one.accuracy_std == pytest.approx(statistics.stdev([0.40, 0.44]))
    assert four.accuracies == [0.31, 0.35]
    assert not failed.done and failed.status == "FAILED"  # a seed failed: not combined
    # A point missing from one run is kept as not combined either.
    (lone,) = [r for r in combine_seed_runs([seed0, seed1[:2]]) if r.budget_bits == 4000]
    assert not lone.done and lone.status == "INCOMPLETE" and "1 of 2" in lone.message
    # The same point at two widths is two models: refused, naming the point.
    other = [point(1, 4, 1000, 0.3, 0.35), point(1, 1, 1000, 1.0, 0.44)]
    with pytest.raises(ValueError, match=r"\(1, None, 1000.0\) has widths \[0.9, 1.0\]"):
        combine_seed_runs([seed0[:2], other])


def test_pooled_std_is_the_root_mean_square_of_the_spreads():
    # Two points with spreads 0.03 and 0.04: sqrt((0.0009 + 0.0016) / 2) = sqrt(0.00125).
    assert search.pooled_std(0.03, 0.04) == pytest.approx(0.035355339)
    assert type(search.pooled_std(0.03, 0.04)) is float  # so that comparisons give bools
    assert search.pooled_std(0.02) == pytest.approx(0.02)
    assert search.pooled_std(0.02, None) is None
    assert np.allclose(search.pooled_std(np.array([0.03, 0.0]), np.array([0.04, 0.0])),
                       [0.035355339, 0.0])
    with pytest.raises(ValueError, match="at least one"):
        search.pooled_std()


def test_dominance_beyond_spread_compares_margins_with_the_pooled_deviation():
    a = [(100, 0.60, 0.01), (200, 0.70, 0.01)]
    close = [(100, 0.58, 0.03), (200, 0.69, 0.03)]   # margins 0.02 and 0.01 < pooled 0.0224
    far = [(100, 0.50, 0.02), (200, 0.60, 0.02)]     # margins 0.10 > pooled 0.0158
    assert front.dominates([p[:2] for p in a], [p[:2] for p in close])  # on means: yes
    assert front.dominates_beyond_spread(a, close) is False               # but inside the noise
    assert front.dominates_beyond_spread(a, far) is True
    # At 150 bits (interpolated): a 0.65 +- 0.01, b 0.60 +- 0.03 (b's points at 100 and 200
    # with spreads 0.03): margin 0.05 > sqrt((0.01^2 + 0.03^2) / 2) = 0.0224.
    mid = [(150, 0.60, 0.03)]
    assert front.dominates_beyond_spread(a, mid) is True
    assert front.dominates_beyond_spread(a, [(150, 0.63, 0.03)]) is False  # 0.02 < 0.0224
    assert front.dominates_beyond_spread(a, [(100, 0.5, None), (200, 0.6, None)]) is None
    with pytest.raises(ValueError, match="do not overlap"):
        front.dominates_beyond_spread(a, [(500, 0.1, 0.01)])
    matrix = front.dominance_beyond_spread_matrix({"1-bit": a, "4-bit": far})
    assert matrix == {"1-bit": {"1-bit": None, "4-bit": True},
                      "4-bit": {"1-bit": False, "4-bit": None}}


def _fake_run(calls):
    """experiment.run without training: accuracy depends on precision, width and seed."""

    def run(config, recipe, *, out_dir, **kwargs):
        calls.append((config.conv_bits, config.width_multiplier, config.seed, out_dir))
        size = int(1000 * config.conv_bits * config.width_multiplier ** 2)
        accuracy = 0.5 + 0.1 * config.width_multiplier + (0.04 if config.conv_bits == 1 else 0) \
            + 0.01 * config.seed
        record = TrialRecord(conv_bits=config.conv_bits, dw_bits=config.dw_bits,
                             width_multiplier=config.width_multiplier, size_bits=size,
                             size_kib=size / 8192, accuracy=accuracy, loss=1.0, seed=config.seed,
                             train_seconds=0.1, config=dataclasses.asdict(config),
                             model_file=os.path.join(out_dir, "model.h5"))
        training.write_json(os.path.join(out_dir, experiment.RECORD_FILE), record.to_dict())
        return record

    return run


def test_a_sweep_with_seeds_trains_each_point_per_seed_and_reports_mean_and_spread(
        tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "run", _fake_run(calls))
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    kwargs = dict(bits=[1, 4], width_multipliers=[0.5, 1.0], recipe=RECIPE,
                  datasets=_tiny_datasets(), out_dir=str(tmp_path), seeds=3)
    result = search.sweep(base, **kwargs)
    # 2 precisions x 2 widths x seeds 0, 1, 2; each seed in its own folder.
    assert sorted((c[0], c[1], c[2]) for c in calls) == sorted(
        (b, w, s) for b in (1, 4) for w in (0.5, 1.0) for s in (0, 1, 2))
    assert len({c[3] for c in calls}) == 12
    seed_dirs = [c[3] for c in calls if c[2] == 2]
    assert all(os.path.basename(d) == "seed_2" for d in seed_dirs)
    for r in result["records"]:
        expected = [0.5 + 0.1 * r.width_multiplier + (0.04 if r.conv_bits == 1 else 0)
                    + 0.01 * s for s in (0, 1, 2)]
        assert r.seeds == [0, 1, 2] and r.accuracies == pytest.approx(expected)
        assert r.accuracy == pytest.approx(np.mean(expected))
        assert r.accuracy_std == pytest.approx(np.std(expected, ddof=1))  # 0.01
    # Each seed's accuracy rises by 0.01 per seed, so the spread is 0.01 and the means of
    # 1-bit and 4-bit differ by 0.04 at equal width. Sizes differ (1-bit is 4x smaller),
    # so the curves are compared where they overlap (1,000 to 1,000 bits: 1-bit at width
    # 1.0 vs 4-bit at 0.5): 0.64 + 0.01 vs 0.55 + 0.01, margin 0.09 > spread 0.01.
    assert result["dominance"]["1-bit"]["4-bit"] is True
    assert result["dominance_beyond_spread"]["1-bit"]["4-bit"] is True
    saved = json.loads((tmp_path / search.run.RESULTS_JSON).read_text())
    assert saved["seeds"] == 3 and saved["dominance_beyond_spread"]["4-bit"]["1-bit"] is False
    assert all(len(r["accuracies"]) == 3 and r["accuracy_std"] > 0 for r in saved["records"])
    rows = list(csv.DictReader(open(tmp_path / search.run.RESULTS_CSV, encoding="utf-8")))
    assert all(r["seeds"] == "0 1 2" and len(r["accuracies"].split()) == 3 for r in rows)
    assert all(float(r["accuracy_std"]) == pytest.approx(0.01) for r in rows)
    assert os.path.getsize(tmp_path / "pareto.png") > 1000  # drawn with error bars
    # A rerun trains nothing again.
    calls.clear()
    search.sweep(base, **kwargs)
    assert calls == []


def test_a_project_resumed_with_another_seed_count_is_refused_before_training(
        tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "run", _fake_run(calls))
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    kwargs = dict(bits=[1], width_multipliers=[0.5], recipe=RECIPE, datasets=_tiny_datasets(),
                  out_dir=str(tmp_path))
    search.sweep(base, seeds=1, **kwargs)
    calls.clear()
    # The finished 1-seed trial would stay at one seed beside 2-seed ones: refused.
    with pytest.raises(ValueError, match=r"trained with 1 seed\(s\) each; received seeds=2"):
        search.sweep(base, seeds=2, **kwargs)
    assert calls == []
    assert search.sweep(base, seeds=1, **kwargs)["records"][0].seeds == [0]  # same count: ok


def test_one_seed_has_no_spread_so_no_dominance_beyond_it(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "run", _fake_run([]))
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    result = search.sweep(base, bits=[1, 4], width_multipliers=[0.5, 1.0], recipe=RECIPE,
                          datasets=_tiny_datasets(), out_dir=str(tmp_path))
    assert all(r.seeds == [0] and r.accuracy_std is None for r in result["records"])
    assert result["dominance"]["1-bit"]["4-bit"] is True
    assert result["dominance_beyond_spread"]["1-bit"]["4-bit"] is None


@pytest.mark.parametrize("call", [
    lambda **k: search.sweep(experiment.RunConfig(), bits=[1], width_multipliers=[1], **k),
    lambda **k: search.dual_precision_search(experiment.RunConfig(), 1000, **k),
    lambda **k: search.proxy_search(experiment.RunConfig(), 1000, **k),
])
def test_bad_seed_counts_are_refused_before_any_work(tmp_path, call):
    with pytest.raises(ValueError, match="seeds must be an int >= 1; received 0"):
        call(recipe=RECIPE, out_dir=str(tmp_path / "o"), seeds=0)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="seed must be an int >= 0; received -1"):
        experiment.RunConfig(seed=-1)


def test_the_search_commands_take_seeds_and_the_recipe_flags():
    parser = cli.build_parser()
    for argv in (["sweep", "--model", "resnet_cifar", "--bits", "1", "--widths", "1"],
                 ["search", "--model", "resnet_cifar", "--budget-kib", "4"],
                 ["fit-budget", "--model", "resnet_cifar", "--device", "nrf52840"]):
        args = parser.parse_args(argv + ["--out", "o", "--seeds", "3", "--epochs", "10",
                                         "--lr", "0.1", "--warmup-epochs", "2",
                                         "--weight-decay", "1e-4", "--label-smoothing", "0.1"])
        recipe = cli._search_recipe(args)  # pylint: disable=protected-access
        assert args.seeds == 3
        assert (recipe.epochs, recipe.learning_rate, recipe.warmup_epochs, recipe.weight_decay,
                recipe.label_smoothing) == (10, 0.1, 2, 1e-4, 0.1)
        default = cli._search_recipe(parser.parse_args(argv + ["--out", "o"]))  # noqa
        assert default.learning_rate == training.CIFAR.learning_rate and args.seeds == 3
        assert parser.parse_args(argv + ["--out", "o"]).seeds == 1


def test_a_seeded_training_pipeline_repeats_its_order_and_augmentations():
    """Crop-and-flip in a parallel map: the same seed gives the same batches."""
    from tfq_pareto import keras  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
    info = data.DatasetInfo(name="toy", num_classes=2, image_shape=(8, 8, 3), mean=(0.5,) * 3,
                            std=(0.25,) * 3, num_train=64, num_test=0, augmentation="crop_flip")
    raw = tf.data.Dataset.from_tensor_slices((images, np.arange(64) % 2))

    def epochs(seed):
        keras.utils.set_random_seed(seed)
        batches = data.pipeline(raw, info, training=True, batch_size=16, seed=seed)
        return [np.concatenate([np.asarray(x) for x, _ in batches]) for _ in range(2)]

    first, again, other = epochs(3), epochs(3), epochs(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])  # each epoch reshuffles and re-augments
    assert not np.array_equal(first[0], other[0])


@pytest.mark.slow
def test_a_seeded_run_is_reproducible_and_another_seed_differs(tmp_path):
    datasets = _tiny_datasets(64)
    config = experiment.RunConfig(model="resnet_cifar", depth=20, width_multiplier=0.25,
                                  conv_bits=2, act_bits=8, dataset="digits", seed=5)

    def weights(out, seed):
        record = experiment.run(dataclasses.replace(config, seed=seed), RECIPE,
                                out_dir=str(tmp_path / out), datasets=datasets, verbose=0)
        assert record.seed == seed and record.config["seed"] == seed
        return [w.numpy() for w in load_model(record.model_file).weights]

    first, again, other = weights("a", 5), weights("b", 5), weights("c", 6)
    assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(first, again))
    assert not all(np.allclose(x, y, atol=1e-3) for x, y in zip(first, other))


def test_the_demo_verdict_claims_a_winner_only_beyond_the_seed_spread():
    from tfq_pareto_cli import demo  # pylint: disable=import-outside-toplevel

    def point(bits, accuracies):
        runs = [TrialRecord(conv_bits=bits, seed=s, accuracy=a, loss=0.0)
                for s, a in enumerate(accuracies)]
        return combine_seeds(runs)

    eight = point(8, [0.90, 0.92])           # mean 0.91, std 0.01414
    clear = demo.compare(point(1, [0.95, 0.96]), eight)  # +4.5 points, pooled 1.118
    assert clear["beyond_spread"] is True
    assert clear["margin_points"] == pytest.approx(4.5)
    assert clear["pooled_std_points"] == pytest.approx(100 * np.sqrt((0.0002 + 0.00005) / 2))
    assert clear["verdict"].startswith("1-bit beats 8-bit by 4.50 points, more than the seed")
    noisy = demo.compare(point(1, [0.89, 0.95]), eight)  # +1.0 point, pooled 3.16
    assert noisy["beyond_spread"] is False and "does not show" in noisy["verdict"]
    worse = demo.compare(point(1, [0.80, 0.81]), eight)
    assert worse["beyond_spread"] is True and worse["verdict"].startswith("8-bit beats 1-bit")
    single = demo.compare(point(1, [0.95]), point(8, [0.90]))
    assert single["beyond_spread"] is None and "one seed" in single["verdict"]
