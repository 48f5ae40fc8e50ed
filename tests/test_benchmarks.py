"""The benchmark scripts run end to end in a tiny configuration and write what they promise.

The real runs (results in benchmarks/results/) take from minutes to an hour; here
each script runs on a few images / rounds so that it cannot rot.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


def _run(script, *args, timeout=900):
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args],
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_qat_overhead_writes_a_ratio_per_model_and_configuration(tmp_path):
    out = tmp_path / "qat.json"
    # One small model with depthwise convs (VGG-11 variant B; its configurations are
    # ResNet-20's plus DualPrecision): the real run (benchmarks/results/qat_overhead.json)
    # has ResNet-20 and MobileNetV2-CIFAR.
    _run("qat_overhead.py", "--rounds", "2", "--warmup", "1", "--width", "0.125", "--batch-size",
         "16", "--models", "vgg11B", "--out", str(out))
    result = json.loads(out.read_text())
    got = {(r["model"], r["configuration"]): r for r in result["records"]}
    for config in ("float", "tfmot_default_8bit", "apply_conv_bits_1", "apply_conv_bits_2",
                   "apply_conv_bits_4", "apply_conv_bits_1_tfmot_activations",
                   "dual_precision_conv_1_dw_4"):
        assert ("vgg11B_w0.12", config) in got
    assert {model for model, _ in got} == {"vgg11B_w0.12"}
    for r in got.values():
        assert r["ratio_to_float"] > 0 and r["median_step_cpu_s"] > 0
        if r["configuration"] == "float":
            assert r["ratio_to_float"] == 1.0


@pytest.mark.slow  # starts TensorFlow in a subprocess
def test_qat_overhead_rejects_an_unknown_model():
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "qat_overhead.py"),
                             "--models", "resnet20,vgg99"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2 and "vgg99" in result.stderr


def _cifar_shaped_npz(folder, n_train=128, n_test=128):
    """Random images and labels under the file names of ../shared/data (no download, any machine)."""
    rng = np.random.default_rng(0)
    for name, n in (("cifar10_train_20k.npz", n_train), ("cifar10_test.npz", n_test)):
        np.savez(folder / name, x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, n))


@pytest.mark.slow
def test_dual_precision_benchmark_compares_8bit_and_costs_the_proxy(tmp_path):
    _cifar_shaped_npz(tmp_path)
    out = tmp_path / "out"
    # VGG-11 variant A (Table 6: one depthwise-separable layer) trains 4x faster than
    # MobileNetV2-CIFAR, the default, whose real run is in benchmarks/results.
    _run("dual_precision_cifar.py", "--model", "vgg11", "--variant", "A", "--bits", "1,8",
         "--budget-width", "0.2", "--epochs", "1", "--train-images", "128", "--test-images",
         "128", "--proxy-fraction", "0.5", "--seeds", "2", "--data-dir", str(tmp_path),
         "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "vgg11A" and summary["schedule"]["seeds"] == 2
    grid = [r for r in summary["grid"] if r["accuracy"] is not None]
    assert all(r["seeds"] == [0, 1] and r["accuracy"] == pytest.approx(np.mean(r["accuracies"]))
               for r in grid)
    eight = summary["eight_bit"]
    assert eight is not None and [eight["conv_bits"], eight["dw_bits"]] == [8, 8]
    best = max(grid, key=lambda r: r["accuracy"])
    assert summary["best_pair"]["accuracy"] == best["accuracy"]
    assert summary["gain_over_8bit_points"] == pytest.approx(
        100 * (best["accuracy"] - eight["accuracy"]))
    pooled = np.sqrt((np.var(best["accuracies"], ddof=1) + np.var(eight["accuracies"], ddof=1))
                     / 2)
    assert summary["gain_pooled_std_points"] == pytest.approx(100 * pooled)
    assert summary["gain_beyond_spread"] == bool(best["accuracy"] - eight["accuracy"] > pooled)
    cost = summary["search_cost"]
    assert cost["grid_trainings"] == len(grid)
    assert [s["top_k"] for s in cost["proxy_search"]] == [1, 2]
    # The grid as a search trains each pair once: one seed's share of its two trainings.
    seconds = {(r["conv_bits"], r["dw_bits"]): r["train_seconds"] / 2 for r in grid}
    assert cost["grid_train_seconds"] == pytest.approx(sum(seconds.values()))
    # Spearman's rho of the proxy's accuracies against the grid's means, from the ranks
    # (1 - 6 sum d^2 / (n (n^2 - 1)); 4 pairs, ties unlikely with 128 test images).
    proxy = {tuple(int(b) for b in k.split("/")): v for k, v in cost["proxy_accuracies"].items()}
    pairs = sorted(proxy)
    rank_p = np.argsort(np.argsort([proxy[p] for p in pairs]))
    means = {(r["conv_bits"], r["dw_bits"]): r["accuracy"] for r in grid}
    rank_g = np.argsort(np.argsort([means[p] for p in pairs]))
    rank = cost["proxy_vs_grid_rank"]
    assert rank["pairs"] == len(pairs) == 4
    if len(set(proxy.values())) == 4 and len(set(means.values())) == 4:
        d2 = float(np.sum((rank_p - rank_g) ** 2))
        assert rank["spearman"] == pytest.approx(1 - 6 * d2 / (4 * 15))
    for strategy in cost["proxy_search"]:
        # The finals are the grid's trials of the proxy's best k pairs the budget takes.
        wanted = [p for p in strategy["proxy_ranking"] if tuple(p) in seconds][:strategy["top_k"]]
        assert strategy["final_pairs"] == wanted and strategy["final_trainings"] == len(wanted)
        assert strategy["final_train_seconds"] == pytest.approx(
            sum(seconds[tuple(p)] for p in wanted))
        assert strategy["train_seconds"] == pytest.approx(
            strategy["proxy"]["train_seconds"] + strategy["final_train_seconds"])
        assert strategy["ratio_to_grid"] == pytest.approx(
            strategy["train_seconds"] / cost["grid_train_seconds"])
        assert strategy["same_pair_as_grid"] == (
            [strategy["pick"]["conv_bits"], strategy["pick"]["dw_bits"]] == cost["grid_ranking"][0])
        assert 1 <= strategy["grid_rank_of_pick"] <= len(grid)
        pick = means[(strategy["pick"]["conv_bits"], strategy["pick"]["dw_bits"])]
        assert strategy["points_below_grid_best"] == pytest.approx(100 * (best["accuracy"] - pick))
        if strategy["same_pair_as_grid"]:
            assert strategy["within_grid_spread"] is True
    # The proxy grid is trained once for every k (same ranking, same proxy seconds).
    one, two = cost["proxy_search"]
    assert one["proxy_ranking"] == two["proxy_ranking"]
    assert one["proxy"]["train_seconds"] == two["proxy"]["train_seconds"]


@pytest.mark.slow
def test_dual_precision_benchmark_grids_resnet20_over_conv_bits(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    _run("dual_precision_cifar.py", "--model", "resnet_cifar", "--bits", "1,2,8",
         "--budget-width", "0.25", "--epochs", "1", "--train-images", "64", "--test-images",
         "64", "--proxy-fraction", "0.5", "--seeds", "1", "--top-k", "1", "--data-dir",
         str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    grid = [r for r in summary["grid"] if r["accuracy"] is not None]
    assert sorted(r["conv_bits"] for r in grid) == [1, 2, 8]
    assert all(r["dw_bits"] is None for r in grid)  # no depthwise convs: conv bits only
    assert summary["eight_bit"]["conv_bits"] == 8
    # One seed: no spread, so no claim either way.
    assert summary["gain_beyond_spread"] is None
    assert summary["search_cost"]["proxy_vs_grid_rank"]["pairs"] == 3
    # Another proxy against the same grid: the grid is resumed (its records unchanged).
    _run("dual_precision_cifar.py", "--model", "resnet_cifar", "--bits", "1,2,8",
         "--budget-width", "0.25", "--epochs", "1", "--train-images", "64", "--test-images",
         "64", "--proxy-fraction", "0.25", "--seeds", "1", "--top-k", "1", "--proxy-dir",
         "proxy_quarter", "--data-dir", str(tmp_path), "--out", str(out))
    other = json.loads((out / "summary_proxy_quarter.json").read_text())
    assert other["grid"] == summary["grid"]
    assert other["search_cost"]["proxy_search"][0]["proxy"]["fraction"] == 0.25
    assert (out / "proxy_quarter" / "results.json").exists()


@pytest.mark.slow
def test_dual_precision_benchmark_combines_seed_grids_trained_by_separate_processes(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    common = ["--model", "resnet_cifar", "--bits", "1,8", "--budget-width", "0.25", "--epochs",
              "1", "--train-images", "64", "--test-images", "64", "--proxy-fraction", "0.5",
              "--seeds", "2", "--top-k", "1", "--data-dir", str(tmp_path), "--out", str(out)]
    _run("dual_precision_cifar.py", *common, "--only-seed", "1")
    assert not (out / "summary.json").exists() and not (out / "grid_seed_0").exists()
    _run("dual_precision_cifar.py", *common, "--only-proxy")
    assert (out / "proxy" / "results.json").exists() and not (out / "summary.json").exists()
    seed_1 = json.loads((out / "grid_seed_1" / "results.json").read_text())["records"]
    # The combining run trains seed 0 and resumes seed 1 and the proxy.
    _run("dual_precision_cifar.py", *common, "--seed-grids")
    seed_0 = json.loads((out / "grid_seed_0" / "results.json").read_text())["records"]
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "grid_seed_1" / "results.json").read_text())["records"] == seed_1
    by_bits = {bits: [next(r for r in seed if r["conv_bits"] == bits) for seed in (seed_0, seed_1)]
               for bits in (1, 8)}
    for row in summary["grid"]:
        one, two = by_bits[row["conv_bits"]]
        assert one["seed"] == 0 and two["seed"] == 1
        assert row["seeds"] == [0, 1] and row["width"] == one["width_multiplier"]
        assert row["accuracies"] == [one["accuracy"], two["accuracy"]]
        assert row["accuracy"] == pytest.approx((one["accuracy"] + two["accuracy"]) / 2)
        assert row["accuracy_std"] == pytest.approx(
            abs(one["accuracy"] - two["accuracy"]) / np.sqrt(2))
        assert row["train_seconds"] == pytest.approx(one["train_seconds"] + two["train_seconds"])
    assert summary["grid_layout"].startswith("one 1-seed grid per seed")
    assert summary["search_cost"]["proxy_vs_grid_rank"]["pairs"] == 2


def test_dual_precision_benchmark_refuses_a_seed_outside_seeds():
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "dual_precision_cifar.py"),
                             "--seeds", "2", "--only-seed", "2"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2 and "--only-seed must be one of 0..1" in result.stderr
    assert "received 2" in result.stderr


def test_dual_precision_benchmark_needs_a_variant_with_vgg11():
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "dual_precision_cifar.py"),
                             "--model", "vgg11"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 2 and "--variant is needed with --model vgg11" in result.stderr


@pytest.mark.slow
def test_convert_time_benchmark_times_both_paths_and_compares_the_files(tmp_path):
    out = tmp_path / "convert.json"
    _run("convert_time.py", "--models", "resnet20", "--width", "0.25", "--repeats", "1",
         "--out", str(out))
    (record,) = json.loads(out.read_text())["records"]
    assert record["model"] == "resnet20" and len(record["seconds"]["frozen"]) == 1
    assert record["frozen_seconds"] > 0 and record["keras_seconds"] > 0
    assert record["ratio_keras_to_frozen"] == pytest.approx(
        record["keras_seconds"] / record["frozen_seconds"])
    # The frozen conversion makes the same model: ops, weights, I/O quantization, outputs.
    assert record["same_ops"] and record["same_weights"] and record["same_io_quantization"]
    assert record["same_litert_outputs"]


@pytest.mark.slow
def test_figure1_benchmark_writes_curves_dominance_and_the_seed_spread(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    _run("figure1_cifar.py", "--model", "resnet_cifar", "--bits", "4,1", "--budget-widths",
         "0.125,0.25", "--epochs", "1", "--train-images", "64", "--repeats", "1",
         "--data-dir", str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    points = sorted((r["conv_bits"], r["size_bits"]) for r in summary["records"])
    assert [b for b, _ in points] == [1, 1, 4, 4]
    for budget in summary["budgets_bits"]:  # each precision widened to each budget
        sizes = [s for _, s in points if abs(s - budget) <= 0.03 * budget]
        assert len(sizes) == 2
    assert set(summary["dominance"]) == {"1-bit", "4-bit"}
    repeats = summary["cheapest_point_repeats"]
    assert len(repeats["accuracies"]) == 2
    assert repeats["spread"] == pytest.approx(max(repeats["accuracies"]) - min(repeats["accuracies"]))
    assert (out / "sweep" / "pareto.png").exists()


@pytest.mark.slow
def test_figure1_benchmark_trains_each_seed_in_its_own_process_and_combines_them(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    common = ("--model", "resnet_cifar", "--bits", "4,1", "--budget-widths", "0.125",
              "--epochs", "1", "--train-images", "64", "--seeds", "2", "--data-dir",
              str(tmp_path), "--out", str(out))
    _run("figure1_cifar.py", *common, "--only-seed", "1")
    assert not (out / "summary.json").exists() and not (out / "sweep_seed_0").exists()
    seed1 = json.loads((out / "sweep_seed_1" / "results.json").read_text())["records"]
    _run("figure1_cifar.py", *common, "--repeats", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2
    seed0 = json.loads((out / "sweep_seed_0" / "results.json").read_text())["records"]
    for record in summary["records"]:
        key = (record["conv_bits"], record["width"])
        (first,) = [r for r in seed0 if (r["conv_bits"], r["width_multiplier"]) == key]
        (second,) = [r for r in seed1 if (r["conv_bits"], r["width_multiplier"]) == key]
        assert (first["seed"], second["seed"]) == (0, 1)
        assert record["accuracies"] == [first["accuracy"], second["accuracy"]]
        assert record["accuracy"] == pytest.approx((first["accuracy"] + second["accuracy"]) / 2)
        assert record["accuracy_std"] == pytest.approx(
            abs(first["accuracy"] - second["accuracy"]) / 2 ** 0.5)
    assert set(summary["dominance_beyond_spread"]) == {"1-bit", "4-bit"}
    repeats = summary["cheapest_point_repeats"]  # both seeds' runs, then one more (seed 2)
    assert len(repeats["accuracies"]) == 3 and (out / "repeat_0" / "record.json").exists()
    assert json.loads((out / "repeat_0" / "record.json").read_text())["seed"] == 2
    assert (out / "pareto.png").exists()


@pytest.mark.parametrize("script", ["figure1_cifar.py", "mcu_fit.py"])
def test_a_seed_outside_the_seeds_is_refused_before_any_work(tmp_path, script):
    refused = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), "--seeds", "2", "--only-seed", "2",
         "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2
    assert "--only-seed must be one of 0..1 (--seeds 2); received 2" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_training_floor_refuses_a_negative_first_seed_before_any_work(tmp_path):
    refused = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "training_floor.py"), "--first-seed", "-1",
         "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2 and "--first-seed >= 0 (got 2, -1)" in refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_training_floor_benchmark_reports_mean_spread_and_margin(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    for seed in ("0", "1"):  # one process per seed, as on a multi-core machine
        _run("training_floor.py", "--bits", "1,8", "--seeds", "1", "--first-seed", seed,
             "--epochs", "1", "--warmup-epochs", "0", "--train-images", "64",
             "--data-dir", str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 4 and summary["setting"]["act_bits"] == 8
    assert sorted((r["conv_bits"], r["seed"]) for r in summary["runs"]) == [
        (1, 0), (1, 1), (8, 0), (8, 1)]  # the second process kept the first one's rows
    for row in summary["per_precision"]:
        mine = [r for r in summary["runs"] if r["conv_bits"] == row["conv_bits"]]
        half = [100 * r["accuracy_every_other"] for r in mine]
        assert row["seeds"] == 2 and row["every_other_mean"] == pytest.approx(np.mean(half))
        assert row["every_other_std"] == pytest.approx(np.std(half, ddof=1))
        assert row["margin_over_reference"] == pytest.approx(
            row["every_other_mean"] - {1: 69.8, 8: 65.0}[row["conv_bits"]])
    widths = {r["conv_bits"]: r["width"] for r in summary["per_precision"]}
    assert widths[1] > widths[8]  # 1-bit widened to the same Eq. (6) size


@pytest.mark.slow
def test_floor_ablation_trains_each_variant_and_the_float_one_has_no_quantizer(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    _run("floor_ablation.py", "--variants", "current,float,noaug+reflect", "--bits", "8",
         "--epochs", "1", "--train-images", "64", "--data-dir", str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert {r["variant"] for r in summary["runs"]} == {"current", "float", "noaug+reflect"}
    assert summary["reference"]["8"] == 65.0 and summary["setting"]["act_bits"] == 8
    rows = {row["variant"]: row for row in summary["per_variant"]}
    run = next(r for r in summary["runs"] if r["variant"] == "float")
    assert rows["float"]["accuracy_full_mean"] == pytest.approx(100 * run["accuracy_full"])
    assert rows["float"]["seeds"] == 1 and rows["float"]["accuracy_full_std"] is None
    from tfq_pareto import load_model  # pylint: disable=import-outside-toplevel

    def wrapped(variant):
        model = load_model(str(out / f"{variant}_b8_s0" / "model.h5"), compile=False)
        return sum("Quantize" in type(layer).__name__ for layer in model.layers)

    assert wrapped("float") == 0 and wrapped("current") > 0


def test_floor_ablation_variants_patch_the_library_and_undo_it():
    sys.path.insert(0, BENCHMARKS)
    try:
        import floor_ablation  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    from tfq_pareto import data, experiment, keras  # pylint: disable=import-outside-toplevel

    originals = (experiment.apply, data.pipeline, data._crop,  # pylint: disable=protected-access
                 keras.layers.Conv2D.__init__, keras.layers.BatchNormalization.__init__)
    undo = []
    floor_ablation._apply_variant("torch_init", undo)  # pylint: disable=protected-access
    # PyTorch's Conv2d default: uniform in +-1/sqrt(fan_in); fan_in = 3 * 3 * 64 = 576.
    two = keras.Sequential([keras.Input((8, 8, 64)), keras.layers.Conv2D(64, 3, padding="same"),
                            keras.layers.Conv2D(64, 3)])
    kernels = [layer.kernel.numpy() for layer in two.layers]
    assert all(np.abs(k).max() <= 1 / np.sqrt(576) + 1e-7 for k in kernels)
    assert np.var(kernels[0]) == pytest.approx(1 / (3 * 576), rel=0.1)
    assert not np.allclose(kernels[0], kernels[1])  # each layer its own draw
    obj, name, value = undo.pop()
    setattr(obj, name, value)
    floor_ablation._apply_variant("he_normal", undo)  # pylint: disable=protected-access
    assert type(keras.layers.Conv2D(4, 3).kernel_initializer).__name__ == "HeNormal"
    obj, name, value = undo.pop()
    setattr(obj, name, value)
    for name in ("float", "noaug", "reflect", "glorot", "bn099"):
        floor_ablation._apply_variant(name, undo)  # pylint: disable=protected-access
    conv = keras.layers.Conv2D(4, 3, kernel_initializer="he_normal")  # as the families build
    assert type(conv.kernel_initializer).__name__ == "GlorotUniform"
    assert keras.layers.BatchNormalization().momentum == 0.99
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    assert experiment.apply(model, conv_bits=1) is model
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    crop = floor_ablation._reflect_crop(image, 2, False,  # pylint: disable=protected-access
                                        np.array([1, 2], np.int64))
    # Every value of a reflection-padded crop is one of the image's (no zero border).
    assert set(np.asarray(crop).ravel()) <= set(image.ravel())
    for obj, name, value in reversed(undo):
        setattr(obj, name, value)
    assert (experiment.apply, data.pipeline, data._crop,  # pylint: disable=protected-access
            keras.layers.Conv2D.__init__, keras.layers.BatchNormalization.__init__) == originals
    conv = keras.layers.Conv2D(4, 3, kernel_initializer="he_normal")
    assert type(conv.kernel_initializer).__name__ == "HeNormal"


@pytest.mark.slow
def test_ablation_benchmark_trains_each_variant(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    _run("ablation_cifar.py", "--epochs", "1", "--train-images", "64", "--data-dir",
         str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["accuracy"]) == {"current", "tfmot_ranges", "decoupled"}
    records = {v: json.loads((out / f"{v}_0" / "record.json").read_text()) for v in summary["accuracy"]}
    assert {r["config"]["width_multiplier"] for r in records.values()} == {0.3438}
    assert all(0.0 <= a <= 1.0 for a in summary["accuracy"].values())


@pytest.mark.slow
def test_decode_arena_benchmark_compares_both_packings_of_one_model(tmp_path):
    out = tmp_path / "decode_arena.json"
    _run("decode_arena.py", "--cases", "resnet20_1bit", "--samples", "2", "--out", str(out))
    (record,) = json.loads(out.read_text())["records"]
    before, after = record["before"], record["after"]
    assert record["case"] == "resnet20_1bit" and before["decode_cap_used"] is None
    # ResNet-20 at width 1 decodes at most 3x3x64x64 = 36,864 B: within the allowance,
    # so "auto" leaves it whole and both files are the same size.
    assert before["largest_decode_bytes"] == 36_864 and after["split_layers"] == {}
    assert after["packed_file_bytes"] == before["packed_file_bytes"]
    assert record["arena_within_int8_plus_64_kib"] is True


def test_decode_arena_benchmark_builds_the_demos_model():
    from tfq_pareto_cli import demo  # the benchmark may not import the CLI; it copies these

    sys.path.insert(0, BENCHMARKS)
    try:
        import decode_arena  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    assert (decode_arena.DEMO_MODEL, decode_arena.DEMO_DEPTH, decode_arena.DEMO_IMAGE_SIZE) == (
        demo.DEMO_MODEL, demo.DEMO_DEPTH, demo.DEMO_IMAGE_SIZE)


def test_demo_repeat_benchmark_repeats_the_demos_own_budget():
    from tfq_pareto_cli import demo  # the benchmark runs the command; it copies the default

    sys.path.insert(0, BENCHMARKS)
    try:
        import demo_repeat  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    assert demo_repeat.DEMO_BUDGET_WIDTH == demo.DEMO_BUDGET_WIDTH


@pytest.mark.slow
def test_demo_repeat_benchmark_scans_and_repeats_on_new_seeds(tmp_path):
    out = tmp_path / "demo"
    text = _run("demo_repeat.py", "--budget-widths", "0.25", "--budget-width", "0.25",
                "--repeats", "2", "--epochs", "1", "--out", str(out)).stdout
    summary = json.loads((out / "summary.json").read_text())
    (scan,), repeats = summary["scan"], summary["repeats"]
    assert [r["first_seed"] for r in repeats] == [0, 2]
    assert repeats[0]["comparison"] == scan["comparison"]  # same folder: resumed, not retrained
    second = repeats[1]
    assert len(second["eight_bit"]["accuracies"]) == 2 and second["first_seed"] == 2
    assert second["one_bit"]["width_multiplier"] > 2 * second["eight_bit"]["width_multiplier"]
    margin = 100 * (second["one_bit"]["accuracy"] - second["eight_bit"]["accuracy"])
    assert second["comparison"]["margin_points"] == pytest.approx(margin)
    assert second["comparison"]["verdict"] in text and "per seed" in second["table"]


@pytest.mark.slow
def test_mcu_fit_benchmark_picks_certifies_and_compares_with_8_bit(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    _run("mcu_fit.py", "--models", "resnet_cifar", "--budgets", "tiny=32:64", "--bits", "1,8",
         "--seeds", "1", "--epochs", "1", "--train-images", "64", "--max-width", "0.5",
         "--data-dir", str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["rows"]
    assert (row["model"], row["budget"], row["flash_kib"]) == ("resnet_cifar", "tiny", 32)
    assert row["bits"] == [1, 8]  # the precision set of this row
    (run,) = row["runs"]
    assert run["certificate_holds_on_tflm"] is True
    assert run["pick"]["flash_bytes"] <= 32 * 1024 and run["pick"]["ram_bytes"] <= 64 * 1024
    assert run["eight_bit"]["label"] == "8-bit"
    assert run["pick"]["accuracy"] >= run["eight_bit"]["accuracy"]  # the pick is the best
    assert row["margin_points"] == pytest.approx(
        100 * (run["pick"]["accuracy"] - run["eight_bit"]["accuracy"]))
    # One seed: no spread, so no verdict either way.
    assert row["spread_points"] is None and row["margin_exceeds_spread"] is None
    # Another budget later: its row joins the first one's; another schedule is refused.
    _run("mcu_fit.py", "--models", "resnet_cifar", "--budgets", "other=40:64", "--bits", "1,8",
         "--seeds", "1", "--epochs", "1", "--train-images", "64", "--max-width", "0.5",
         "--min-width", "0.125", "--data-dir", str(tmp_path), "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert [r["budget"] for r in summary["rows"]] == ["tiny", "other"]
    assert (row["min_width"], summary["rows"][1]["min_width"]) == (0.25, 0.125)
    assert summary["rows"][0] == row and set(summary["budgets_kib"]) == {"tiny", "other"}
    refused = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "mcu_fit.py"), "--models", "resnet_cifar",
         "--budgets", "tiny=32:64", "--epochs", "2", "--train-images", "64", "--max-width",
         "0.5", "--data-dir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2 and "another schedule" in refused.stderr
    assert "'epochs': (1, 2)" in refused.stderr


@pytest.mark.slow
def test_mcu_fit_benchmark_runs_one_seed_per_process_then_resumes_them(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    out = tmp_path / "out"
    common = ("--models", "resnet_cifar", "--budgets", "tiny=32:64", "--bits", "1,8",
              "--seeds", "2", "--epochs", "1", "--train-images", "64", "--max-width", "0.5",
              "--data-dir", str(tmp_path), "--out", str(out))
    _run("mcu_fit.py", *common, "--only-seed", "1")
    assert not (out / "summary.json").exists()  # another process may run seed 0 meanwhile
    seed1 = out / "resnet_cifar_tiny" / "seed1" / "results.json"
    assert not (out / "resnet_cifar_tiny" / "seed0").exists()
    trained = {p: p.stat().st_mtime for p in (out / "resnet_cifar_tiny" / "seed1").rglob("model.h5")}
    assert len(trained) == 2  # 1-bit and 8-bit
    _run("mcu_fit.py", *common)  # trains seed 0, resumes seed 1
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["seed"] for r in row["runs"]] == [0, 1]
    assert {p: p.stat().st_mtime for p in trained} == trained  # seed 1 was not retrained
    pick = json.loads(seed1.read_text())["pick"]
    assert row["runs"][1]["pick"]["accuracy"] == pick["accuracy"]
    bad = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "mcu_fit.py"), *common, "--only-seed", "2"],
        capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and "--only-seed must be one of 0..1" in bad.stderr


def _floor_summary():
    """A training_floor.py summary with two precisions, two seeds each (fractions)."""
    runs = [{"conv_bits": bits, "seed": seed, "width": width, "size_bits": size,
             "accuracy_full": acc, "accuracy_every_other": acc, "train_seconds": secs}
            for bits, width, size, seed, acc, secs in (
                (1, 1.0, 278400, 1, 0.72, 30.0), (1, 1.0, 278400, 0, 0.74, 10.0),
                (8, 0.3555, 278208, 0, 0.66, 5.0), (8, 0.3555, 278208, 1, 0.68, 7.0))]
    recipe = {"epochs": 8, "batch_size": 128, "learning_rate": 0.05, "warmup_epochs": 1,
              "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "label_smoothing": 0.0,
              "act_bits": 8}
    return {"setting": {"model": "resnet20_cifar", "train_images": 20000, "budget_bits": 274112,
                        "epochs": 8, "warmup_epochs": 1, "act_bits": 8, "recipe": recipe},
            "runs": runs, "per_precision": []}


def test_halving_benchmark_reads_the_training_floor_as_a_grid():
    sys.path.insert(0, BENCHMARKS)
    try:
        import halving_cifar  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    grid = halving_cifar.grid_from_floor(_floor_summary())
    pairs = {g["conv_bits"]: g for g in grid["grid"]}
    assert grid["bits"] == [1, 8] and grid["budget_bits"] == 274112
    assert pairs[1]["seeds"] == [0, 1] and pairs[1]["accuracies"] == [0.74, 0.72]  # seed order
    assert pairs[1]["accuracy"] == pytest.approx(0.73)
    assert pairs[1]["accuracy_std"] == pytest.approx(np.std([0.74, 0.72], ddof=1))
    assert pairs[1]["train_seconds"] == 40.0 and pairs[8]["train_seconds"] == 12.0
    assert pairs[8]["dw_bits"] is None and pairs[8]["width"] == 0.3555
    assert grid["size_tolerance"] == 0.03  # what the floor's widths were searched with
    assert grid["schedule"]["epochs"] == 8 and grid["schedule"]["act_bits"] == 8
    assert grid["schedule"]["test_images"] is None  # the floor's full test set
    assert grid["recipe"]["weight_decay"] == 5e-4
    # The search is judged against this grid as against a dual_precision one.
    pick = type("Pick", (), {"conv_bits": 8, "dw_bits": None, "accuracy": 0.7,
                             "width_multiplier": 0.3555, "size_kib": 33.96})()
    result = {"best": pick, "rungs": [{"accuracies": {"1": 0.3, "8": 0.4}}],
              "train_seconds": {"total": 10.0}, "eval_seconds": 1.0, "total_steps": 100,
              "failed": [],
              "pairs": {"1": {"conv_bits": 1, "dw_bits": None, "step": 33, "rungs": [0],
                              "train_seconds": 3.0},
                        "8": {"conv_bits": 8, "dw_bits": None, "step": 100, "rungs": [0, 1],
                              "train_seconds": 7.0}}}
    report = halving_cifar.compare(grid, result)
    assert report["grid_best"] == "1" and report["grid_rank_of_pick"] == 2
    assert report["points_below_grid_best"] == pytest.approx(6.0)
    pooled = ((np.std([0.74, 0.72], ddof=1) ** 2 + np.std([0.66, 0.68], ddof=1) ** 2) / 2) ** 0.5
    assert report["pooled_std_points"] == pytest.approx(100 * pooled)
    assert report["within_grid_spread"] is False
    assert report["grid_seconds_all_seeds"] == 52.0 and report["grid_seconds_one_seed"] == 26.0
    assert report["ratio_to_grid_all_seeds"] == pytest.approx(11.0 / 52.0)
    assert report["steps_ratio_to_grid_all_seeds"] == pytest.approx(133 / 400)
    assert report["grid_width_of_pick"] == 0.3555
    # The pick's seconds per step: 7 s over 100 steps in the search, 12 s over 2 x 100 in the grid.
    assert report["pick_seconds_per_step_halving"] == pytest.approx(0.07)
    assert report["pick_seconds_per_step_grid"] == pytest.approx(0.06)


@pytest.mark.slow
def test_halving_benchmark_searches_on_the_training_floors_setting(tmp_path):
    _cifar_shaped_npz(tmp_path, n_train=64, n_test=64)
    floor = tmp_path / "floor"
    _run("training_floor.py", "--bits", "1,8", "--seeds", "2", "--epochs", "3",
         "--warmup-epochs", "0", "--train-images", "64", "--data-dir", str(tmp_path),
         "--out", str(floor))
    _run("halving_cifar.py", "--model", "resnet_cifar", "--grid", str(floor / "summary.json"),
         "--rungs", "0.34", "--data-dir", str(tmp_path), "--out", str(tmp_path / "search"))
    report = json.loads((tmp_path / "search" / "summary_halving_seed_0.json").read_text())
    floor_runs = json.loads((floor / "summary.json").read_text())["runs"]
    assert report["grid_seeds"] == [2] and report["eta"] == 2
    assert report["total_steps"] == 3  # 64 images, batch 128: 1 step per epoch, 3 epochs
    assert report["halving_steps"] == 1 + 3  # both pairs to the rung, the pick to the end
    assert report["steps_ratio_to_grid_all_seeds"] == pytest.approx(4 / 12)
    assert report["pick_width"] == report["grid_width_of_pick"]  # the floor's width, found again
    assert report["grid_seconds_all_seeds"] == pytest.approx(
        sum(r["train_seconds"] for r in floor_runs))
    assert set(report["rungs"][0]["accuracies"]) == {"1", "8"}


def _floor_with_histories(folder, curves, train_images=256, batch_size=128, warmup_epochs=1):
    """A training_floor.py folder: summary.json and each run's history.csv (test accuracy per
    epoch, in ``curves[(bits, seed)]``)."""
    epochs = len(next(iter(curves.values())))
    runs = []
    for (bits, seed), accuracies in curves.items():
        run_dir = folder / f"b{bits}_s{seed}"
        run_dir.mkdir(parents=True)
        lines = ["epoch,accuracy,loss,val_accuracy,val_loss"] + [
            f"{e},0.5,1.0,{a},1.0" for e, a in enumerate(accuracies)]
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
        runs.append({"conv_bits": bits, "seed": seed, "width": 1.0, "size_bits": 1000,
                     "accuracy_full": accuracies[-1], "accuracy_every_other": accuracies[-1],
                     "train_seconds": 1.0})
    recipe = {"epochs": epochs, "batch_size": batch_size, "learning_rate": 0.05,
              "warmup_epochs": warmup_epochs, "act_bits": 8}
    summary = {"setting": {"train_images": train_images, "budget_bits": 1000, "act_bits": 8,
                           "epochs": epochs, "warmup_epochs": warmup_epochs, "recipe": recipe},
               "runs": runs, "per_precision": []}
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def test_rung_ranking_reads_where_the_grids_order_settles(tmp_path):
    import math  # pylint: disable=import-outside-toplevel

    from scipy import stats  # pylint: disable=import-outside-toplevel

    sys.path.insert(0, BENCHMARKS)
    try:
        import rung_ranking  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    # Epoch 1 ranks 8 > 4 > 2 > 1 (the reverse of the end), epoch 3 is the final order.
    curves = {(1, 0): [0.10, 0.50, 0.80], (1, 1): [0.12, 0.52, 0.78],
              (2, 0): [0.20, 0.40, 0.70], (2, 1): [0.22, 0.42, 0.74],
              (4, 0): [0.30, 0.45, 0.60], (4, 1): [0.28, 0.47, 0.62],
              (8, 0): [0.40, 0.30, 0.50], (8, 1): [0.38, 0.33, 0.54]}
    summary = _floor_with_histories(tmp_path, curves)
    table = rung_ranking.rung_table(summary, rung_ranking.read_runs(str(tmp_path), summary))
    assert table["grid_best"] == 1 and table["steps_per_epoch"] == 2
    assert table["grid_final_mean"]["1"] == pytest.approx(0.79)
    rows = {(r["epoch"], tuple(r["seeds"])): r for r in table["rows"]}
    assert len(rows) == 3 * 3  # 3 epochs x (seed 0, seed 1, both)
    first, last = rows[(1, (0, 1))], rows[(3, (0, 1))]
    assert first["leader"] == 8 and first["spearman"] == pytest.approx(-1.0)
    assert first["leader_points_below_best"] == pytest.approx(100 * (0.79 - 0.52))
    assert not first["leader_within_spread"] and not first["leader_is_grid_best"]
    assert last["leader"] == 1 and last["spearman"] == pytest.approx(1.0)
    middle = rows[(2, (0,))]  # seed 0 alone: 1 (0.50) > 4 (0.45) > 2 (0.40) > 8 (0.30)
    final = [0.79, 0.72, 0.61, 0.52]
    assert middle["spearman"] == pytest.approx(stats.spearmanr([0.50, 0.40, 0.45, 0.30],
                                                               final)[0])
    # lr at the end of epoch 2: warm-up 2 steps, cosine over 4 more, 2 of them done.
    assert middle["lr_fraction_of_peak"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))
    # One-rung halving at epoch 1 with one seed: 4 pairs x 1 epoch + the pick's 2 more, over
    # the 2-seed grid's 2 x 4 x 3 epochs; with both seeds twice that.
    assert rows[(1, (1,))]["halving_steps_ratio_to_grid"] == pytest.approx(6 / 24)
    assert first["halving_steps_ratio_to_grid"] == pytest.approx(12 / 24)


def test_rung_ranking_refuses_a_history_that_is_not_the_run(tmp_path):
    sys.path.insert(0, BENCHMARKS)
    try:
        import rung_ranking  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(BENCHMARKS)
    summary = _floor_with_histories(tmp_path, {(1, 0): [0.1, 0.5], (8, 0): [0.2, 0.4]})
    summary["runs"][0]["accuracy_full"] = 0.9  # the record says 0.9, the history 0.5
    with pytest.raises(ValueError, match=r"last epoch 0\.5000 is not the run's accuracy 0\.9000"):
        rung_ranking.read_runs(str(tmp_path), summary)


@pytest.mark.slow  # starts TensorFlow in a subprocess
def test_prior_order_benchmark_reproduces_its_committed_result(tmp_path):
    """prior_order.py trains nothing: rerun on the committed grids it writes the committed
    file again (pick, rank, spread and cost of every row)."""
    out = tmp_path / "prior_order.json"
    _run("prior_order.py", "--out", str(out), timeout=300)
    with open(os.path.join(BENCHMARKS, "results", "prior_order.json"), encoding="utf-8") as f:
        committed = json.load(f)
    assert json.loads(out.read_text()) == committed
