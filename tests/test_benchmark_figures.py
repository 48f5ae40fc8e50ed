"""BENCHMARKS.md quotes its result files: every figure below is read from the JSON and must
appear in the document as written there, so the two cannot drift apart."""

import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def _doc():
    with open(os.path.join(ROOT, "BENCHMARKS.md"), encoding="utf-8") as f:
        return f.read()


def _load(*parts):
    path = os.path.join(RESULTS, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not produced yet")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pct(value):
    return f"{100 * value:.2f}%"


def test_training_floor_figures_are_quoted():
    summary, doc = _load("training_floor", "summary.json"), _doc()
    def mean_std(mean, std):
        return f"{mean:.2f}" if std is None else f"{mean:.2f} +- {std:.2f}"

    for row in summary["per_precision"]:
        assert mean_std(row["full_mean"], row["full_std"]) in doc, row["conv_bits"]
        assert mean_std(row["every_other_mean"], row["every_other_std"]) in doc
        assert f"{row['margin_over_reference']:+.2f}" in doc
    # Each step of the precision order, against the pooled std of the two rows (computed here).
    rows, text = {r["conv_bits"]: r for r in summary["per_precision"]}, " ".join(doc.split())
    for high, low in ((1, 2), (2, 4), (4, 8), (1, 8)):
        margin = rows[high]["full_mean"] - rows[low]["full_mean"]
        pooled = ((rows[high]["full_std"] ** 2 + rows[low]["full_std"] ** 2) / 2) ** 0.5
        assert margin > pooled  # the document calls every step beyond the spread
        assert (f"{high}-bit over {low}-bit by {margin:+.2f} points (pooled std {pooled:.2f})"
                in text)


def test_training_floor_before_the_init_fix_is_quoted():
    """The floor's he_normal run (seed 0, before commit 87ca96e) stays as its before column."""
    summary, doc = _load("training_floor", "he_normal", "summary.json"), _doc()
    for row in summary["per_precision"]:
        assert f"{row['full_mean']:.2f} / {row['every_other_mean']:.2f}" in doc, row["conv_bits"]


def test_floor_ablation_figures_are_quoted():
    summary, doc = _load("training_floor", "ablation", "summary.json"), _doc()

    def mean_std(row, key):
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        return f"{mean:.2f}" if std is None else f"{mean:.2f} +- {std:.2f}"

    rows = {row["variant"]: row for row in summary["per_variant"]}
    for row in rows.values():
        quoted = (f"| {row['variant']} | {row['seeds']} | {mean_std(row, 'accuracy_full')} | "
                  f"{mean_std(row, 'accuracy_every_other')} |")
        assert quoted in doc, quoted
    torch, he = rows["torch_init"], rows["he_normal"]
    margin = torch["accuracy_full_mean"] - he["accuracy_full_mean"]
    pooled = ((torch["accuracy_full_std"] ** 2 + he["accuracy_full_std"] ** 2) / 2) ** 0.5
    assert f"{margin:+.2f} points (pooled std {pooled:.2f})" in doc


def _kib_label(bits):
    return f"~{bits / 8192:.0f} KiB"


def test_figure1_mobilenet_seeded_table_margins_and_dominance_are_quoted():
    """MobileNetV2-CIFAR, 2 seeds per point: each point's mean +- std, width, size and seeds;
    the best of each budget in bold; for each pair of precisions its margin at every budget
    against the pooled std (computed here from the seeds), and Definition 4.1 on the means
    and beyond the spread as the summary's matrices say."""
    summary, doc = _load("figure1_mobilenet_v2_cifar", "summary.json"), _doc()
    assert summary["seeds"] == 2 and summary["schedule"]["train_images"] == 5000
    budgets = sorted(summary["budgets_bits"])
    at = {}
    for record in summary["records"]:
        assert len(record["accuracies"]) == 2
        # the mean and std are those of the two seeds' values
        assert record["accuracy"] == pytest.approx(sum(record["accuracies"]) / 2)
        assert record["accuracy_std"] == pytest.approx(
            abs(record["accuracies"][0] - record["accuracies"][1]) / 2 ** 0.5)
        cell = f"{_pct(record['accuracy'])[:-1]} +- {100 * record['accuracy_std']:.2f}%"
        seeds = ", ".join(f"{100 * a:.2f}" for a in record["accuracies"])
        detail = f" (w {record['width']:.3f}, {record['size_kib']:.1f} KiB; {seeds})"
        assert cell + detail in doc or cell + "**" + detail in doc, cell + detail
        budget = min(budgets, key=lambda b: abs(b - record["size_bits"]))
        assert abs(record["size_bits"] - budget) <= summary["size_tolerance"] * budget
        at[(record["conv_bits"], budget)] = record
    assert len(at) == 3 * len(budgets)
    for budget in budgets:
        best = max((at[(b, budget)] for b in (1, 2, 4)), key=lambda r: r["accuracy"])
        assert f"**{_pct(best['accuracy'])[:-1]} +- {100 * best['accuracy_std']:.2f}%**" in doc
        assert f"| {_kib_label(budget)} |" in doc
    for high, low in ((4, 1), (4, 2), (2, 1)):  # more bits over fewer, as the table reads
        cells = []
        for budget in budgets:
            a, b = at[(high, budget)], at[(low, budget)]
            margin = 100 * (a["accuracy"] - b["accuracy"])
            pooled = 100 * ((a["accuracy_std"] ** 2 + b["accuracy_std"] ** 2) / 2) ** 0.5
            verdict = "beyond" if abs(margin) > pooled else "within"
            cells.append(f"{margin:+.2f} (pooled {pooled:.2f}, {verdict})")
        label, other = f"{high}/{high}-bit", f"{low}/{low}-bit"
        means = summary["dominance"][label][other]
        spread = summary["dominance_beyond_spread"][label][other]
        assert not spread or means  # beyond the spread is the stricter verdict
        row = (f"| {high}/{high}-bit over {low}/{low}-bit | {' | '.join(cells)} | "
               f"{'yes' if means else 'no'} | {'yes' if spread else 'no'} |")
        assert row in doc, row
    flat = " ".join(doc.split())
    summary_row = _summary_line_of_figure1_mobilenet(summary, at, budgets)
    assert summary_row in flat, summary_row


def _summary_line_of_figure1_mobilenet(summary, at, budgets):
    """The BENCHMARKS summary row's headline: each budget's leader and its lead over the
    runner-up against their pooled std."""
    parts = []
    for budget in budgets:
        ranked = sorted((at[(b, budget)] for b in (1, 2, 4)), key=lambda r: -r["accuracy"])
        first, second = ranked[0], ranked[1]
        pooled = 100 * ((first["accuracy_std"] ** 2 + second["accuracy_std"] ** 2) / 2) ** 0.5
        parts.append(f"{_kib_label(budget)}: {first['conv_bits']}/{first['conv_bits']}-bit leads "
                     f"by {100 * (first['accuracy'] - second['accuracy']):.2f} (pooled {pooled:.2f})")
    return "; ".join(parts)


def test_figure1_resnet_seeded_table_and_dominance_are_quoted():
    """Every point's mean +- std and seeds (2 per point), Definition 4.1 on the means and beyond
    the pooled spread, and each margin quoted with its pooled std."""
    summary, doc = _load("figure1_resnet_cifar", "summary.json"), _doc()
    assert summary["seeds"] == 2
    flat = " ".join(doc.split())
    at = {}
    for record in summary["records"]:
        assert len(record["accuracies"]) == 2
        cell = f"{_pct(record['accuracy'])[:-1]} +- {100 * record['accuracy_std']:.2f}%"
        seeds = ", ".join(f"{100 * a:.2f}" for a in record["accuracies"])
        detail = f" (w {record['width']:.3f}; {seeds})"
        assert cell + detail in doc or cell + "**" + detail in doc, cell + detail
        budget = min(summary["budgets_bits"], key=lambda b: abs(b - record["size_bits"]))
        at[(record["conv_bits"], budget)] = record
    for budget in summary["budgets_bits"]:  # the best of each budget is the bold one
        best = max((at[(b, budget)] for b in (1, 2, 4)), key=lambda r: r["accuracy"])
        assert f"**{_pct(best['accuracy'])[:-1]} +- {100 * best['accuracy_std']:.2f}%**" in doc
    for matrix in ("dominance", "dominance_beyond_spread"):
        assert summary[matrix]["1-bit"]["4-bit"] is True
        assert summary[matrix]["2-bit"]["4-bit"] is False
    assert "**1-bit dominates 4-bit beyond the seed spread**" in doc and "2-bit does not" in doc

    def margin(a, b, budget):
        ra, rb = at[(a, budget)], at[(b, budget)]
        pooled = ((ra["accuracy_std"] ** 2 + rb["accuracy_std"] ** 2) / 2) ** 0.5
        return 100 * (ra["accuracy"] - rb["accuracy"]), 100 * pooled

    small, middle, large = sorted(summary["budgets_bits"])
    ones = [margin(1, 4, b) for b in (small, middle, large)]
    assert all(m > p for m, p in ones)  # beyond the spread at every budget, as quoted
    assert (f"ahead by {ones[0][0]:.2f}, {ones[1][0]:.2f} and {ones[2][0]:.2f} points at the "
            f"three budgets, against pooled stds of {ones[0][1]:.2f}, {ones[1][1]:.2f} and "
            f"{ones[2][1]:.2f}") in flat
    twos = [margin(2, 4, b) for b in (small, middle, large)]
    assert (f"{-twos[0][0]:.2f} points behind at the smallest budget and {twos[2][0]:.2f} ahead "
            f"at the largest, both within its spread (pooled {twos[0][1]:.2f} and "
            f"{twos[2][1]:.2f}") in flat
    assert twos[0][0] < 0 < twos[2][0] < twos[2][1] and -twos[0][0] < twos[0][1]
    assert f"{twos[1][0]:.2f} ahead (pooled {twos[1][1]:.2f})" in flat
    one_two = [margin(1, 2, b) for b in (small, middle, large)]
    assert (f"1-bit is ahead by {one_two[0][0]:.2f} points at the smallest budget, beyond the "
            f"spread (pooled {one_two[0][1]:.2f}), and by {one_two[2][0]:.2f} at the largest, "
            f"within it (pooled {one_two[2][1]:.2f}); 2-bit is ahead by {-one_two[1][0]:.2f} at "
            f"~8.4 KiB, beyond it (pooled {one_two[1][1]:.2f})") in flat
    assert one_two[0][0] > one_two[0][1] and 0 < one_two[2][0] < one_two[2][1]
    assert -one_two[1][0] > one_two[1][1]
    summary_row = (f"ahead by {ones[0][0]:.2f} / {ones[1][0]:.2f} / {ones[2][0]:.2f} points "
                   f"(pooled std {ones[0][1]:.2f} / {ones[1][1]:.2f} / {ones[2][1]:.2f};")
    assert summary_row in doc


def test_dual_precision_figures_are_quoted():
    """Issue 14's DualPrecision grid on MobileNetV2-CIFAR (2 seeds) with its before column
    (commit e733d3c, 1 seed), the gain over 8/8 against the pooled std, and issue 16 part 3's
    MobileNetV2 setting: the proxy's rank correlation, cost and pick."""
    summary, doc = _load("dual_precision_mobilenet_v2_cifar", "summary.json"), _doc()
    before = _load("dual_precision_mobilenet_v2_cifar", "before_issue14", "summary.json")
    was = {(r["conv_bits"], r["dw_bits"]): r["accuracy"] for r in before["grid"]}
    assert summary["schedule"]["seeds"] == 2
    for record in summary["grid"]:
        old = was.get((record["conv_bits"], record["dw_bits"]))
        old = "failed" if old is None else _pct(old)[:-1]
        if record["accuracy"] is None:
            row = f"| {record['conv_bits']} / {record['dw_bits']} | - | - | failed | - | {old} | - |"
        else:
            row = (f"| {record['conv_bits']} / {record['dw_bits']} | {record['width']:.4f} | "
                   f"{record['size_kib']:.2f} KiB | {_pct(record['accuracy'])[:-1]} +- "
                   f"{100 * record['accuracy_std']:.2f} | "
                   f"{', '.join(_pct(a)[:-1] for a in record['accuracies'])} | {old} | "
                   f"{record['train_seconds'] / len(record['seeds']):.0f} |")
        assert row in doc, row
    best, eight = summary["best_pair"], summary["eight_bit"]
    gain = 100 * (best["accuracy"] - eight["accuracy"])
    pooled = 100 * ((best["accuracy_std"] ** 2 + eight["accuracy_std"] ** 2) / 2) ** 0.5
    assert summary["gain_over_8bit_points"] == pytest.approx(gain)
    assert summary["gain_beyond_spread"] == (gain > pooled)
    flat = " ".join(doc.split())
    assert (f"{best['conv_bits']} / {best['dw_bits']} ahead of 8 / 8 by {gain:+.2f} points "
            f"(pooled std {pooled:.2f})") in flat
    assert ("**beyond the seed spread**" if gain > pooled else "**within the seed spread**") in flat
    # Against the before run, and how many pairs lie within their pooled std of the best.
    done = [r for r in summary["grid"] if r["accuracy"] is not None]
    rises = {pair: 100 * (r["accuracy"] - was[pair])
             for pair, r in (((r["conv_bits"], r["dw_bits"]), r) for r in done)}
    fell = [pair for pair, rise in rises.items() if rise < 0]
    assert fell == [(1, 4)] and f"Every pair but 1/4 ({rises[(1, 4)]:.2f}) rose" in flat
    risen = [rise for rise in rises.values() if rise > 0]
    assert f"by {min(risen):.2f} to {max(risen):.2f} points" in flat
    close = [r for r in done if best["accuracy"] - r["accuracy"]
             <= ((best["accuracy_std"] ** 2 + r["accuracy_std"] ** 2) / 2) ** 0.5]
    assert len(close) == 4 and "four of the seven pairs" in flat
    cost = summary["search_cost"]
    rank = cost["proxy_vs_grid_rank"]
    assert f"rho {rank['spearman']:+.2f} (p = {rank['p_value']:.2f}, {rank['pairs']} pairs)" in flat
    assert f"one training per pair ({cost['grid_train_seconds']:.0f} s)" in flat
    for strategy in cost["proxy_search"]:
        pick, proxy = strategy["pick"], strategy["proxy"]
        row = (f"| proxy at {proxy['fraction']} of the budget, {proxy['epochs']} epoch(s), top "
               f"{strategy['top_k']} | {strategy['ratio_to_grid']:.2f} | {pick['conv_bits']} / "
               f"{pick['dw_bits']} | {strategy['grid_rank_of_pick']} | "
               f"{strategy['points_below_grid_best']:.2f} | "
               f"{'yes' if strategy['within_grid_spread'] else 'no'} |")
        assert row in doc, row


@pytest.mark.parametrize("summary_file", ["summary.json", "summary_proxy_3epochs.json"])
def test_search_cost_figures_are_quoted(summary_file):
    """Issue 16 part 3 on ResNet-20: the grid's means and spreads, the gain over 8-bit, and
    each proxy's rank correlation, cost ratio and pick."""
    summary, doc = _load("dual_precision_resnet_cifar", summary_file), _doc()
    for record in summary["grid"]:
        if record["accuracy"] is not None:
            quoted = f"{_pct(record['accuracy'])[:-1]} +- {100 * record['accuracy_std']:.2f}"
            assert quoted in doc, record
    assert f"{summary['gain_over_8bit_points']:+.2f} points" in doc
    assert f"pooled std {summary['gain_pooled_std_points']:.2f}" in doc
    cost = summary["search_cost"]
    proxy = cost["proxy_search"][0]["proxy"]
    rank = cost["proxy_vs_grid_rank"]
    label = f"proxy at {proxy['fraction']} of the budget, {proxy['epochs']} epoch(s)"
    assert label in doc, label
    assert f"rho {rank['spearman']:+.2f} (p = {rank['p_value']:.2f})" in doc
    flat = " ".join(doc.split())
    accuracies = " / ".join(f"{100 * cost['proxy_accuracies'][f'{b}/None']:.2f}"
                            for b in (1, 2, 4, 8))
    assert accuracies in flat, accuracies
    assert f"one training per precision ({cost['grid_train_seconds']:.0f} s)" in flat
    grid_epoch = cost["grid_train_seconds"] / (len(summary["grid"]) * summary["schedule"]["epochs"])
    proxy_epoch = proxy["train_seconds"] / (proxy["trials"] * proxy["epochs"])
    if proxy["epochs"] == 1:
        assert f"one proxy epoch took {proxy_epoch:.0f} s on average, one grid epoch " \
               f"{grid_epoch:.0f} s" in flat
    for record in summary["grid"]:
        row = (f"| {record['conv_bits']}-bit | {record['width']:.4f} | {record['size_kib']:.2f} KiB "
               f"| {_pct(record['accuracy'])[:-1]} +- {100 * record['accuracy_std']:.2f} | "
               f"{', '.join(_pct(a)[:-1] for a in record['accuracies'])} | "
               f"{record['train_seconds'] / len(record['seeds']):.0f} |")
        assert row in doc, row
    if summary_file == "summary.json":  # the grid's cost with both seeds, as the issue counts it
        both = sum(record["train_seconds"] for record in summary["grid"])
        top1 = cost["proxy_search"][0]
        left = 0.25 * both - top1["final_train_seconds"]
        assert (f"with both seeds ({both:.0f} s of training), the top-1 proxy costs "
                f"{top1['train_seconds'] / both:.2f} of it") in flat
        assert top1["train_seconds"] / both > 0.25
        assert (f"({top1['final_train_seconds']:.0f} s, one seed of 2-bit) is "
                f"{top1['final_train_seconds'] / both:.2f} of it, which leaves {left:.0f} s to "
                f"rank the 4 precisions: {left / 4:.0f} s each") in flat
        assert left / 4 < min(grid_epoch, proxy_epoch)
    for strategy in cost["proxy_search"]:
        pick = strategy["pick"]
        row = (f"| {label}, top {strategy['top_k']} | {strategy['ratio_to_grid']:.2f} | "
               f"{pick['conv_bits']}-bit | {strategy['grid_rank_of_pick']} | "
               f"{strategy['points_below_grid_best']:.2f} | "
               f"{'yes' if strategy['within_grid_spread'] else 'no'} |")
        assert row in doc, row


def test_ablation_figures_are_quoted():
    summary, doc = _load("ablation_resnet20_2bit", "summary.json"), _doc()
    for accuracy in summary["accuracy"].values():
        assert _pct(accuracy) in doc


def test_decode_arena_figures_are_quoted():
    summary, doc = _load("decode_arena.json"), _doc()
    for record in summary["records"]:
        before, after = record["before"], record["after"]
        for value in (before["packed_file_bytes"], after["packed_file_bytes"],
                      before["tflm_arena_bytes_packed"], after["tflm_arena_bytes_packed"],
                      after["tflm_arena_bytes_int8"], before["largest_decode_bytes"],
                      after["largest_decode_bytes"]):
            assert f"{value:,}" in doc, (record["case"], value)
        assert f"{record['packed_ratio_after_to_before']:.3f}x" in doc, record["case"]


def test_the_readme_quotes_the_demos_decode_arena_figures():
    summary = _load("decode_arena.json")
    (demo,) = [r for r in summary["records"] if r["case"] == "demo_1bit"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    quoted = (f"from {demo['before']['tflm_arena_bytes_packed']:,} B to "
              f"{demo['after']['tflm_arena_bytes_packed']:,} B (int8: "
              f"{demo['after']['tflm_arena_bytes_int8']:,} B) for a file "
              f"{demo['packed_ratio_after_to_before']:.3f}x larger")
    assert quoted in " ".join(readme.split())


# --- The README (a user's guide) quotes a few benchmark figures: each is checked here. ---

def _readme_text():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_the_readme_applications_table_is_the_result_file():
    """Every family's row per Keras version (result, packed / int8 bytes, arenas), the counts."""
    records, readme = _load("applications.json")["records"], _readme_text()
    rows = {(line.split("|")[1].strip().split(" (")[0], line.split("|")[2].strip()):
            [c.strip() for c in line.split("|")[1:-1]]
            for line in readme.splitlines() if line.strip().startswith("| ")
            and " (" in line.split("|")[1] and line.count("|") == 7}
    for record in records:
        version = record.get("keras", 2)
        row = rows.get((record["family"], str(version)))
        assert row is not None, f"README has no row for {record['family']} (Keras {version})"
        assert row[0].startswith(f"{record['family']} ({record['model']} {record['input']}x"), row
        if record["status"] == "passes":
            assert row[2] == "passes"
            assert row[3] == (f"{record['packed_file_bytes']:,} / "
                              f"{record['int8_file_bytes']:,} B"), record["family"]
            arenas = (f"{record['arena_bytes_packed']:,} / {record['arena_bytes_int8']:,} B"
                      if "arena_bytes_packed" in record else "not recorded")
            assert row[4] == arenas, record["family"]
        elif record["status"] == "absent":
            assert row[2] == f"not in Keras {version}", row
        else:
            assert row[2] == f"refused by `{record['status']}`" and row[3] == row[4] == "-", row
    flat = " ".join(readme.split())
    for version, words in ((2, "tf_keras"), (3, "Keras 3")):
        present = [r for r in records if r.get("keras", 2) == version and r["status"] != "absent"]
        passed = sum(r["status"] == "passes" for r in present)
        assert f"{passed} of {len(present)} {words} families pass" in flat.lower().replace(
            "keras 3", "Keras 3")
    resnet_rs = next(r for r in records if r["family"] == "ResNetRS" and r.get("keras", 2) == 2)
    assert f"ResNetRS50: {resnet_rs['seconds'] / 60:.0f} minutes on 2 cores" in flat
    irv2 = next(r for r in records if r["family"] == "InceptionResNetV2" and r.get("keras", 2) == 2)
    assert (f"InceptionResNetV2 with tf_keras, {irv2['params'] / 1e6:.0f} M parameters: "
            f"{irv2['seconds'] / 60:.0f} minutes") in flat


def test_the_readme_qat_overhead_figures_are_the_result_file():
    records = _load("qat_overhead.json")["records"]
    mobilenet = {r["configuration"]: r["ratio_to_float"] for r in records
                 if r["model"].startswith("mobilenet_v2_cifar")}
    before = mobilenet["apply_conv_bits_1_tfmot_activations"]
    after = [v for k, v in mobilenet.items()
             if k.startswith(("apply_conv_bits_", "dual_precision_")) and "tfmot" not in k]
    quoted = f"from {before:.2f}x to {min(after):.2f}-{max(after):.2f}x float"
    assert quoted in " ".join(_readme_text().split()), quoted


def test_the_readme_quotes_the_three_demo_runs():
    """Issue 16: the demo run three times (new seeds each), every table in the README."""
    summary, readme = _load("demo", "summary.json"), _readme_text()
    assert len(summary["repeats"]) == 3
    assert len({r["first_seed"] for r in summary["repeats"]}) == 3  # independent seeds
    for row in summary["repeats"]:
        for key in ("eight_bit", "one_bit"):
            r = row[key]
            assert f"{100 * r['accuracy']:.2f}% +- {100 * r['accuracy_std']:.2f}" in readme
            assert ", ".join(_pct(a) for a in r["accuracies"]) in readme
        assert row["comparison"]["verdict"] in " ".join(readme.split())


def test_convert_time_figures_are_quoted():
    summary, doc = _load("convert_time.json"), _doc()
    for r in summary["records"]:
        same = " / ".join("yes" if r[k] else "no" for k in (
            "same_ops", "same_weights", "same_io_quantization", "same_litert_outputs"))
        row = (f"| {r['model']} | {r['layers']} | {r['frozen_seconds']:.2f} | "
               f"{r['keras_seconds']:.2f} | {r['ratio_keras_to_frozen']:.1f}x | {same} |")
        assert row in doc, row
        assert f"{r['frozen_file_bytes']:,} B" in doc and f"{r['keras_file_bytes']:,} B" in doc
    (resnet,) = [r for r in summary["records"] if r["model"] == "resnet20"]
    assert f"{resnet['ratio_keras_to_frozen']:.1f}x slower" in " ".join(_readme_text().split())


def test_mcu_fit_figures_are_quoted():
    """Every seed's row, the means, spreads and margin, and the widths and flash of seed 0."""
    summary, doc = _load("mcu_fit", "summary.json"), _doc()
    for row in summary["rows"]:
        for run in row["runs"]:
            pick, eight = run["pick"], run["eight_bit"]
            line = (f"| {run['seed']} | {pick['label']} | {pick['width_multiplier']:.4f} | "
                    f"{100 * pick['accuracy']:.2f} | {pick['flash_bytes']:,} | "
                    f"{pick['ram_bytes']:,} | {pick['macs']:,} | {eight['width_multiplier']:.4f} | "
                    f"{100 * eight['accuracy']:.2f} | {eight['flash_bytes']:,} | "
                    f"{eight['ram_bytes']:,} | {'yes' if run['certificate_holds_on_tflm'] else 'no'} |")
            assert line in doc, line
        assert f"pick {_pct(row['pick_mean'])} (std {100 * row['pick_std']:.2f})" in doc
        assert f"8-bit {_pct(row['eight_bit_mean'])} (std {100 * row['eight_bit_std']:.2f})" in doc
        assert f"{row['margin_points']:+.2f} points" in doc
        # The pooled std of the two (rows written before benchmarks/mcu_fit.py used it took the
        # larger std, which gives the same verdict on every row here).
        spread = ((row["pick_std"] ** 2 + row["eight_bit_std"] ** 2) / 2) ** 0.5
        if "spread_points" in row:
            assert row["spread_points"] == pytest.approx(100 * spread)
        assert row["margin_exceeds_spread"] == (row["pick_mean"] - row["eight_bit_mean"] > spread)
        if not row["margin_exceeds_spread"]:
            assert "**within the seed spread**" in doc
        summary_row = (f"pick {_pct(row['pick_mean'])[:-1]} +- {100 * row['pick_std']:.2f}% vs 8-bit "
                       f"{_pct(row['eight_bit_mean'])[:-1]} +- {100 * row['eight_bit_std']:.2f}%")
        assert summary_row in doc, summary_row
    large = [_load("mcu_fit", "resnet_cifar_large", f"seed{k}", "results.json") for k in (0, 1)]
    flat = " ".join(doc.split())
    by_label = [{c["label"]: c for c in seed["candidates"]} for seed in large]
    for label in ("1-bit", "2-bit", "4-bit"):
        quoted = f"{_pct(by_label[0][label]['accuracy'])[:-1]} / {_pct(by_label[1][label]['accuracy'])}"
        assert f"{quoted} ({label}" in flat or f"{quoted}\n({label}" in doc, quoted
    first = by_label[0]
    assert first["1-bit"]["bound_by"] == first["2-bit"]["bound_by"] == "max_width"
    assert first["4-bit"]["bound_by"] == first["8-bit"]["bound_by"] == "flash"
    assert (f"widths {first['4-bit']['width_multiplier']:.2f} and "
            f"{first['8-bit']['width_multiplier']:.2f}, {100 * first['4-bit']['budget_use']['flash']:.0f}% "
            f"and {100 * first['8-bit']['budget_use']['flash']:.1f}% of the flash") in flat
    assert (f"using {100 * first['1-bit']['budget_use']['flash']:.0f}% and "
            f"{100 * first['2-bit']['budget_use']['flash']:.0f}% of the flash") in flat
    assert (f"at {first['1-bit']['macs']:,} MACs, "
            f"{first['1-bit']['macs'] / first['8-bit']['macs']:.1f}x the 8-bit model's") in flat
    seed0 = _load("mcu_fit", "resnet_cifar_small", "seed0", "results.json")
    widths = {c["label"]: c["width_multiplier"] for c in seed0["candidates"]}
    flash = {c["label"]: c["flash_bytes"] for c in seed0["candidates"]}
    assert f"is {widths['1-bit']:.2f} at 1 and 2 bits, {widths['4-bit']:.2f} at 4 bits" in doc
    assert widths["1-bit"] == widths["2-bit"]
    assert f"and {widths['8-bit']:.2f}\nat 8 bits" in doc
    assert f"from {flash['1-bit']:,} B (1-bit) to {flash['8-bit']:,} B (8-bit)" in doc
    assert f"(widths {min(widths.values()):.2f}-{max(widths.values()):.2f})" in doc


def test_mcu_fit_mobilenet_small_budget_probes_are_quoted():
    """MobileNetV2-CIFAR at 256 / 64 KiB: only 8/8 fits, at the narrowest width searched."""
    summary, doc = _load("mcu_fit", "summary.json"), _doc()
    (row,) = [r for r in summary["rows"] if (r["model"], r["budget"]) ==
              ("mobilenet_v2_cifar", "small")]
    assert row["min_width"] == 0.05 and {r["pick"]["label"] for r in row["runs"]} == {"8/8-bit"}
    probes = _load("mcu_fit", "mobilenet_v2_cifar_small", "seed0", "probes.json")
    by_key = {}
    for key, fit in probes.items():
        pair, width = key.split("@")
        by_key[(pair, round(float(width), 6))] = fit
    quoted = [("1/1", 0.25), ("1/1", 0.1), ("1/1", 0.05), ("1/8", 0.05), ("8/1", 0.05),
              ("8/8", 0.25), ("8/8", 0.1), ("8/8", 0.05)]
    for pair, width in quoted:
        fit = by_key[(pair, width)]
        line = (f"| {pair} | {width:.2f} | {fit['flash_bytes']:,} | {fit['ram_bytes']:,} | "
                f"{fit['macs']:,} |")
        assert line in doc, line
    ram = {pair: by_key[(pair, 0.05)]["ram_bytes"] for pair in ("1/1", "1/8", "8/1", "8/8")}
    assert ram["8/8"] <= 64 * 1024 < min(ram["1/1"], ram["1/8"], ram["8/1"])
    assert f"+{ram['1/1'] - ram['8/8']:,} B for 1/1" in doc
    wider = min(w for (pair, w) in by_key if pair == "8/8" and w > 0.05)
    assert by_key[("8/8", wider)]["ram_bytes"] > 64 * 1024
    assert (f"(width {wider:.4f}) needs {by_key[('8/8', wider)]['ram_bytes']:,} B"
            in " ".join(doc.split()))



def _share(fraction):
    """A budget share as quoted: one decimal, two where one would round up to 100.0%."""
    one = f"{100 * fraction:.1f}%"
    return f"{100 * fraction:.2f}%" if one == "100.0%" and fraction < 1 else one


def test_mcu_fit_mobilenet_large_budget_candidates_are_quoted():
    """MobileNetV2-CIFAR at 1 MiB / 320 KiB: every candidate with what binds it and its share,
    the certificate's arena + scratch, and the width step that stops 8/8 below the flash."""
    summary, doc = _load("mcu_fit", "summary.json"), _doc()
    (row,) = [r for r in summary["rows"] if (r["model"], r["budget"]) ==
              ("mobilenet_v2_cifar", "large")]
    assert (row["flash_kib"], row["ram_kib"], row["bits"]) == (1024, 320, [1, 8])
    seeds = [_load("mcu_fit", "mobilenet_v2_cifar_large", f"seed{k}", "results.json")
             for k in (0, 1)]
    by_label = [{c["label"]: c for c in seed["candidates"]} for seed in seeds]
    for label, first in by_label[0].items():
        second = by_label[1][label]
        assert first["width_multiplier"] == second["width_multiplier"]  # shared probes
        use = first["budget_use"]
        line = (f"| {label[:-4]} | {first['width_multiplier']:.4f} | {first['bound_by']} | "
                f"{first['flash_bytes']:,} ({_share(use['flash'])}) | "
                f"{first['ram_bytes']:,} ({_share(use['ram'])}) | "
                f"{first['macs']:,} | {100 * first['accuracy']:.2f} / {100 * second['accuracy']:.2f} |")
        assert line in doc, line
        assert max(use.values()) <= 1.0
    assert {by_label[0][p]["bound_by"] for p in ("1/1-bit", "1/8-bit")} == {"ram"}
    assert {by_label[0][p]["bound_by"] for p in ("8/1-bit", "8/8-bit")} == {"flash"}
    macs = by_label[0]["1/1-bit"]["macs"] / by_label[0]["8/8-bit"]["macs"]
    assert f"for {macs:.1f}x the MACs" in doc
    for seed in seeds:
        certificate = seed["certificate"]
        scratch = certificate["cmsis_nn_scratch"]["largest_bytes"]
        assert certificate["ram_bytes"] + scratch == certificate["ram_bytes_upper_bound"]
    flat = " ".join(doc.split())
    assert (f"{certificate['ram_bytes_upper_bound']:,} B = arena {certificate['ram_bytes']:,} B + "
            f"the largest CMSIS-NN scratch buffer, {scratch:,} B") in flat
    probes = _load("mcu_fit", "mobilenet_v2_cifar_large", "seed0", "probes.json")
    eight = by_label[0]["8/8-bit"]["width_multiplier"]
    wider = min(float(k.split("@")[1]) for k in probes
                if k.startswith("8/8@") and float(k.split("@")[1]) > eight)
    over = probes[f"8/8@{wider:.6f}"]["flash_bytes"]
    assert over > 1024 * 1024 and wider / eight <= 1.05  # the search's 5% bracket
    assert f"the next probed width, {wider:.4f}, needs {over:,} B" in flat


def _halving_row(start, summary):
    """A halving table's row: ``start``, then the rung's rank agreement, the pick and its
    place in the grid, and the cost ratios, as summary_halving_seed_<s>.json gives them."""
    rank = summary["first_rung_vs_grid_rank"]
    return (f"{start}{rank['spearman']:+.2f} (p = {rank['p_value']:.2f}) | "
            f"{summary['pick']} | {_pct(summary['pick_accuracy_halving'])[:-1]} | "
            f"{summary['grid_rank_of_pick']} | {summary['points_below_grid_best']:.2f} | "
            f"{'yes' if summary['within_grid_spread'] else 'no'} | "
            f"{summary['steps_ratio_to_grid_all_seeds']:.2f} | "
            f"{summary['ratio_to_grid_all_seeds']:.2f} | {summary['ratio_to_grid_one_seed']:.2f} |")


@pytest.mark.parametrize("model", ["resnet_cifar", "mobilenet_v2_cifar"])
@pytest.mark.parametrize("seed", [0, 1])
def test_halving_search_figures_are_quoted(model, seed):
    """Issue 16 part 3: successive halving against the 2-seed grid, one row per search seed,
    and the rung's accuracies; the verdict words follow from the numbers."""
    summary = _load(f"dual_precision_{model}", f"summary_halving_seed_{seed}.json")
    grid = _load(f"dual_precision_{model}", summary["grid_summary"])
    doc = " ".join(_doc().split())
    name = {"resnet_cifar": "ResNet-20", "mobilenet_v2_cifar": "MobileNetV2-CIFAR"}[model]
    row = _halving_row(f"| {name} | {seed} | ", summary)
    assert row in doc, row
    (rung,) = summary["rungs"]
    accuracies = ", ".join(f"{pair} {100 * acc:.2f}" for pair, acc in rung["accuracies"].items())
    assert f"{name}, seed {seed}: {accuracies}" in doc, accuracies
    # The grid the search is compared with is the committed one, and it is 2-seeded.
    assert summary["grid_seeds"] == [2] and grid["model"] == model
    best = max((r for r in grid["grid"] if r["accuracy"] is not None),
               key=lambda r: r["accuracy"])
    label = str(best["conv_bits"]) if best["dw_bits"] is None else \
        f"{best['conv_bits']}/{best['dw_bits']}"
    assert summary["grid_best"] == label


def test_halving_search_derived_claims_follow_from_the_files():
    """The prose around the halving table: the learning rate at the rung, step counts, the
    cost range, and how far a halving run's pick lands from the grid's trial of it."""
    import math

    doc = " ".join(_doc().split())
    gaps, seconds = [], []
    for model, steps, grid_steps, eta in (("resnet_cifar", 240, 960, 4),
                                          ("mobilenet_v2_cifar", 360, 1680, 7)):
        grid = _load(f"dual_precision_{model}", "summary.json")
        for seed in (0, 1):
            summary = _load(f"dual_precision_{model}", f"summary_halving_seed_{seed}.json")
            assert (summary["halving_steps"], summary["grid_steps"], summary["eta"]) == (
                steps, grid_steps, eta)
            state = _load(f"dual_precision_{model}", f"halving_seed_{seed}", "halving.json")
            recipe = state["settings"]["recipe"]
            total = summary["total_steps"]
            warmup = round(recipe["warmup_epochs"] * total / recipe["epochs"])
            (step,) = summary["rung_steps"]
            lr = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
            assert f"still at {100 * lr:.0f}% of its peak" in doc
            record = next(r for r in grid["grid"] if r["accuracy"] is not None and (
                str(r["conv_bits"]) if r["dw_bits"] is None
                else f"{r['conv_bits']}/{r['dw_bits']}") == summary["pick"])
            gaps.append(abs(summary["pick_accuracy_halving"] - record["accuracies"][seed]))
            seconds.append(summary["ratio_to_grid_all_seeds"])
        assert f"{steps:,} of {grid_steps:,}" in doc
    assert f"by {100 * min(gaps):.2f} to {100 * max(gaps):.2f} points" in doc
    assert f"{min(seconds):.2f}-" in doc and all(s <= 0.25 for s in sorted(seconds)[:-1])


def test_rung_ranking_table_and_claims_are_quoted():
    """Where the training floor's order settles: each epoch's row (lr, each seed's leader and
    rho, the mean's, the one-rung halving cost), the final means, and the prose's claims."""
    table, doc = _load("training_floor", "rung_ranking.json"), _doc()
    floor = _load("training_floor", "summary.json")
    flat = " ".join(doc.split())
    rows = {}
    for row in table["rows"]:
        rows.setdefault(row["epoch"], {})[tuple(row["seeds"])] = row

    def cell(row):
        return f"{row['leader']} ({row['spearman']:+.2f})"

    for epoch, by_seeds in rows.items():
        one, both = by_seeds[(0,)], by_seeds[(0, 1)]
        quoted = (f"| {epoch} | {100 * one['lr_fraction_of_peak']:.0f} | {cell(one)} | "
                  f"{cell(by_seeds[(1,)])} | {cell(both)} | "
                  f"{one['halving_steps_ratio_to_grid']:.2f} / "
                  f"{both['halving_steps_ratio_to_grid']:.2f} |")
        assert quoted in doc, quoted
    # The final means are the floor's full-test accuracies, and each step is beyond the spread.
    finals = ", ".join(f"{b}-bit {100 * table['grid_final_mean'][b]:.2f} +- "
                       f"{100 * table['grid_final_std'][b]:.2f}" for b in ("1", "2", "4", "8"))
    assert f"On the full test set, the grid's final means are: {finals}%" in flat
    for b in ("1", "2", "4", "8"):
        runs = [r["accuracy_full"] for r in floor["runs"] if str(r["conv_bits"]) == b]
        assert table["grid_final_mean"][b] == pytest.approx(sum(runs) / len(runs))
    mean, std = table["grid_final_mean"], table["grid_final_std"]
    for high, low in (("1", "2"), ("2", "4"), ("4", "8")):
        assert mean[high] - mean[low] > ((std[high] ** 2 + std[low] ** 2) / 2) ** 0.5
    # The prose: epochs 2 and 3 flip, the mean's order is 1-bit first from epoch 6 on, and
    # only epochs 1-2 fit under 0.25 with one search seed.
    assert rows[2][(0,)]["leader"] == rows[2][(1,)]["leader"] == 1
    assert rows[3][(0,)]["leader"] == rows[3][(1,)]["leader"] == 8
    assert "Both seeds put 1-bit first after epoch 2 and 8-bit, the grid's last, first after " \
           "epoch 3." in flat
    settled = [e for e in rows if all(rows[k][(0, 1)]["leader"] == 1
                                      and round(rows[k][(0, 1)]["spearman"], 2) >= 0.8
                                      for k in rows if k >= e)]
    assert min(settled) == 6
    assert (f"From epoch 6 on (lr at {100 * rows[6][(0,)]['lr_fraction_of_peak']:.0f}% of its "
            f"peak), the two seeds' mean puts 1-bit first with rho of +0.80 or more") in flat
    assert f"costs {rows[6][(0,)]['halving_steps_ratio_to_grid']:.2f} of the 2-seed" in flat
    assert [e for e in rows if rows[e][(0,)]["halving_steps_ratio_to_grid"] <= 0.25] == [1, 2]


@pytest.mark.parametrize("seed", [0, 1])
def test_halving_on_the_training_floor_is_quoted(seed):
    """Successive halving on the training floor's 2-seed grid (a grid whose order is beyond
    its spread): one row per search seed, checked against the floor's own runs."""
    summary = _load("training_floor", f"summary_halving_seed_{seed}.json")
    floor = _load("training_floor", summary["grid_summary"])
    doc = " ".join(_doc().split())
    (rung,) = summary["rungs"]
    accuracies = " / ".join(f"{100 * rung['accuracies'][b]:.2f}" for b in ("1", "2", "4", "8"))
    row = _halving_row(f"| {seed} | {accuracies} | ", summary)
    assert row in doc, row
    # The grid it is judged against is the committed floor: 2 seeds per precision, its best
    # the precision with the highest mean full-test accuracy, its seconds the runs' own.
    means = {}
    for run in floor["runs"]:
        means.setdefault(str(run["conv_bits"]), []).append(run["accuracy_full"])
    assert summary["grid_seeds"] == [2] and all(len(v) == 2 for v in means.values())
    assert summary["grid_best"] == max(means, key=lambda b: sum(means[b]))
    assert summary["grid_seconds_all_seeds"] == pytest.approx(
        sum(r["train_seconds"] for r in floor["runs"]))
    # The search widened each precision as the floor did, and ranked once, at a third.
    assert summary["pick_width"] == summary["grid_width_of_pick"]
    assert summary["rungs"][0]["fraction"] == pytest.approx(1 / 3, abs=0.01)
    assert f"step {summary['rung_steps'][0]} of {summary['total_steps']:,}" in doc


def test_halving_on_the_training_floor_derived_claims_follow_from_the_files():
    """The prose around the floor's halving table: the lr at the rung, the cut's margin, the
    pooled std, the exact steps ratio, and the per-step seconds of each pick."""
    import math  # pylint: disable=import-outside-toplevel

    doc = " ".join(_doc().split())
    seeds = [_load("training_floor", f"summary_halving_seed_{s}.json") for s in (0, 1)]
    state = _load("training_floor", "halving_seed_0", "halving.json")
    recipe, (step,) = state["settings"]["recipe"], seeds[0]["rung_steps"]
    total = seeds[0]["total_steps"]
    warmup = round(recipe["warmup_epochs"] * total / recipe["epochs"])
    lr = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    assert f"the rung is at step {step} of {total:,} (lr at {100 * lr:.0f}% of its peak)" in doc
    right, wrong = seeds
    assert right["grid_rank_of_pick"] == 1 and wrong["grid_rank_of_pick"] == 4
    assert right["first_rung_vs_grid_rank"]["spearman"] == pytest.approx(1.0)
    # The wrong pick led its rung by a wide margin, computed here from the rung's accuracies.
    rung = wrong["rungs"][0]["accuracies"]
    ranked = sorted(rung, key=rung.get, reverse=True)
    margin = 100 * (rung[ranked[0]] - rung[ranked[1]])
    assert ranked[0] == wrong["pick"] == "8"
    assert (f"first by {margin:.2f} points at the rung and returns it: the grid's last, "
            f"{wrong['points_below_grid_best']:.2f} points below 1-bit (pooled std "
            f"{wrong['pooled_std_points']:.2f})") in doc
    steps = 4 * step + (total - step)
    assert right["halving_steps"] == steps and right["grid_steps"] == 8 * total
    assert steps / (8 * total) > 0.25  # the document calls it the goal's edge, not under it
    assert (f"{steps:,} optimizer steps against the 2-seed grid's {8 * total:,}, i.e. "
            f"{steps / (8 * total):.4f}") in doc
    assert (f"{right['pick_seconds_per_step_halving']:.2f} here against "
            f"{right['pick_seconds_per_step_grid']:.2f} in the grid (1-bit) and "
            f"{wrong['pick_seconds_per_step_halving']:.2f} against "
            f"{wrong['pick_seconds_per_step_grid']:.2f} (8-bit)") in doc
    assert f"search seed 0, at {steps / (8 * total):.4f} of the steps" in doc
    # The summary table's row quotes the same figures.
    assert (f"seed 0 picks 1-bit, the grid's best (rung rho "
            f"{right['first_rung_vs_grid_rank']['spearman']:+.2f}); seed 1 picks 8-bit, the "
            f"grid's last, {wrong['points_below_grid_best']:.2f} points below; "
            f"{steps / (8 * total):.4f} of the grid's steps") in doc


def test_the_sensitivity_order_table_is_quoted_and_its_picks_follow_from_the_grids():
    """Issue 16 part 3, the sensitivity-based order: each row as prior_order.json gives it;
    the pick, its rank and its distance to the best recomputed here from the grid files by the
    rule written out (fewest conv bits, then depthwise bits >= 4, fewest first)."""
    report = _load("prior_order.json")
    doc = " ".join(_doc().split())
    for row in report["rows"]:
        rank = row["order_vs_grid_rank"]
        quoted = (f"| {row['setting']} | {', '.join(row['order'])} | {row['pick']} | "
                  f"{row['grid_rank_of_pick']} | {row['points_below_grid_best']:.2f} | "
                  f"{row['pooled_std_points']:.2f} | "
                  f"{'yes' if row['within_grid_spread'] else 'no'} | "
                  f"{rank['spearman']:+.2f} (p = {rank['p_value']:.2f}) | "
                  f"{row['steps_ratio_to_grid_all_seeds']:.3f} | "
                  f"{row['seconds_ratio_to_grid_all_seeds']:.2f} |")
        assert quoted in doc, quoted
        summary = _load(*row["grid_summary"].split("/"))
        if "runs" in summary:  # the training floor: one entry per (precision, seed)
            by_bits = {}
            for run in summary["runs"]:
                by_bits.setdefault(str(run["conv_bits"]), []).append(run["accuracy_full"])
        else:
            by_bits = {(str(g["conv_bits"]) if g["dw_bits"] is None
                        else f"{g['conv_bits']}/{g['dw_bits']}"): g["accuracies"]
                       for g in summary["grid"] if g["accuracy"] is not None}
        means = {k: sum(v) / len(v) for k, v in by_bits.items()}

        def key(label):
            conv, _, dw = label.partition("/")
            dw = int(dw) if dw else 8
            return (int(conv), (0, dw) if dw >= 4 else (1, -dw))

        pick = min(means, key=key)
        best = max(means, key=means.get)
        assert row["pick"] == pick and row["grid_best"] == best
        assert row["grid_rank_of_pick"] == 1 + sorted(means, key=means.get,
                                                      reverse=True).index(pick)
        assert row["points_below_grid_best"] == pytest.approx(100 * (means[best] - means[pick]))
        assert row["steps_ratio_to_grid_all_seeds"] == pytest.approx(
            1 / sum(len(v) for v in by_bits.values()))
    picks = {row["setting"]: row for row in report["rows"]}
    assert [r["within_grid_spread"] for r in picks.values()] == [True, False, True]
    mobilenet = picks["MobileNetV2-CIFAR, 3 epochs"]
    assert (f"{mobilenet['pick']} is sixth of seven, {mobilenet['points_below_grid_best']:.2f} "
            f"points below {mobilenet['grid_best']}, outside the pooled std of "
            f"{mobilenet['pooled_std_points']:.2f}") in doc
    assert f"(rho {mobilenet['order_vs_grid_rank']['spearman']:+.2f})" in doc


def _annealed_row(seed, summary):
    """A row of the annealed-rung table, as summary_halving_anneal_seed_<s>.json gives it."""
    rung = summary["rungs"][0]
    before = " / ".join(f"{100 * rung['unannealed'][b]:.2f}" for b in ("1", "2", "4", "8"))
    after = " / ".join(f"{100 * rung['accuracies'][b]:.2f}" for b in ("1", "2", "4", "8"))
    plain, probed = summary["first_rung_unannealed_vs_grid_rank"], summary["first_rung_vs_grid_rank"]
    return (f"| {seed} | {before} | {after} | {plain['spearman']:+.2f} / "
            f"{probed['spearman']:+.2f} | {summary['pick']} | "
            f"{_pct(summary['pick_accuracy_halving'])[:-1]} | {summary['grid_rank_of_pick']} | "
            f"{summary['points_below_grid_best']:.2f} | "
            f"{'yes' if summary['within_grid_spread'] else 'no'} | "
            f"{summary['steps_ratio_to_grid_all_seeds']:.4f} | "
            f"{summary['ratio_to_grid_all_seeds']:.2f} | {summary['ratio_to_grid_one_seed']:.2f} |")


@pytest.mark.parametrize("seed", [0, 1])
def test_annealed_halving_on_the_training_floor_is_quoted(seed):
    """Halving with a probe anneal before its rung, on the training floor's grid: the row, and
    the rung ranked on the probes' accuracies (the pick leads them)."""
    summary = _load("training_floor", f"summary_halving_anneal_seed_{seed}.json")
    row = _annealed_row(seed, summary)
    assert row in " ".join(_doc().split()), row
    rung = summary["rungs"][0]
    assert summary["pick"] == max(rung["accuracies"], key=rung["accuracies"].get)
    state = _load("training_floor", f"halving_anneal_seed_{seed}", "halving.json")
    for pair in state["pairs"].values():
        (probe,) = pair["probes"]
        assert probe["steps"] == summary["anneal_steps"]
        assert rung["accuracies"][str(pair["conv_bits"])] == pytest.approx(probe["accuracy"])


def test_annealed_halving_derived_claims_follow_from_the_files():
    """The prose: the rung and probe steps, the exact steps ratio (under 0.25), the lr the
    probe starts from (the recipe's warm-up cosine, written out), and the tally."""
    doc = " ".join(_doc().split())
    seeds = [_load("training_floor", f"summary_halving_anneal_seed_{s}.json") for s in (0, 1)]
    state = _load("training_floor", "halving_anneal_seed_0", "halving.json")
    recipe, (step,) = state["settings"]["recipe"], seeds[0]["rung_steps"]
    total, probe = seeds[0]["total_steps"], seeds[0]["anneal_steps"]
    assert (step, probe, total) == (314, 75, 1256)  # 0.25 and 0.06 of 1,256 steps
    warmup = round(recipe["warmup_epochs"] * total / recipe["epochs"])
    lr = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    first_probe = next(iter(state["pairs"].values()))["probes"][0]
    assert first_probe["start_lr"] == pytest.approx(recipe["learning_rate"] * lr, rel=1e-5)
    assert (f"rung at step {step} of {total:,} (lr at {100 * lr:.0f}% of its peak), "
            f"then a {probe}-step probe") in doc
    steps = 4 * (step + probe) + (total - step)
    for summary in seeds:
        assert summary["halving_steps"] == steps and summary["grid_steps"] == 8 * total
    assert steps / (8 * total) <= 0.25
    assert (f"{steps:,} optimizer steps against the 2-seed grid's {8 * total:,}, i.e. "
            f"{steps / (8 * total):.4f}") in doc


def test_annealed_halving_prose_claims_follow_from_the_rungs():
    """8-bit last after every probe, the 2-seed mean's leader, one pick in two within the
    spread, and the per-step seconds quoted against the grid's."""
    doc = " ".join(_doc().split())
    seeds = [_load("training_floor", f"summary_halving_anneal_seed_{s}.json") for s in (0, 1)]
    probed = [s["rungs"][0]["accuracies"] for s in seeds]
    assert all(min(p, key=p.get) == "8" for p in probed)
    mean = {b: sum(p[b] for p in probed) / 2 for b in probed[0]}
    assert max(mean, key=mean.get) == seeds[1]["pick"] == "2"
    assert [s["within_grid_spread"] for s in seeds] == [True, False]
    right, wrong = seeds
    assert (f"{wrong['points_below_grid_best']:.2f} points below 1-bit with a pooled std of "
            f"{wrong['pooled_std_points']:.2f}") in doc
    assert (f"{right['pick_seconds_per_step_halving']:.2f} here against "
            f"{right['pick_seconds_per_step_grid']:.2f} in the grid for 1-bit, "
            f"{wrong['pick_seconds_per_step_halving']:.2f} against "
            f"{wrong['pick_seconds_per_step_grid']:.2f} for 2-bit") in doc
    ratios = sorted(s["ratio_to_grid_all_seeds"] for s in seeds)
    assert f"Seconds: {ratios[0]:.2f}-{ratios[1]:.2f}" in doc


def test_the_part_3_tally_follows_from_the_search_results():
    """The halving, annealed-halving and sensitivity-order cells of "Part 3 in sum": how many
    search seeds picked within the grid's spread, and the sensitivity order's rank."""
    doc = " ".join(_doc().split())

    def within(folder, stem):
        return sum(bool(_load(folder, f"{stem}_seed_{s}.json")["within_grid_spread"])
                   for s in (0, 1))

    resnet = within("dual_precision_resnet_cifar", "summary_halving")
    floor = within("training_floor", "summary_halving")
    mobilenet = within("dual_precision_mobilenet_v2_cifar", "summary_halving")
    annealed = within("training_floor", "summary_halving_anneal")
    assert (resnet, floor, mobilenet, annealed) == (0, 1, 2, 1)
    assert (f"| successive halving, one rung | no, {resnet} of 2 search seeds | {floor} of 2 | "
            f"yes, weakly, {mobilenet} of 2 |") in doc
    wrong = _load("training_floor", "summary_halving_anneal_seed_1.json")["grid_rank_of_pick"]
    assert (f"| not run | {annealed} of 2 (the other: rank {wrong}, just outside) | not run |"
            in doc)
    rows = {r["setting"]: r for r in _load("prior_order.json")["rows"]}
    ranks = [rows[k]["grid_rank_of_pick"] for k in (
        "ResNet-20, 3 epochs", "ResNet-20, training floor, 8 epochs", "MobileNetV2-CIFAR, 3 epochs")]
    verdicts = [rows[k]["within_grid_spread"] for k in (
        "ResNet-20, 3 epochs", "ResNet-20, training floor, 8 epochs", "MobileNetV2-CIFAR, 3 epochs")]
    assert verdicts == [True, True, False]
    assert (f"| sensitivity order (Table 1), one training | yes (rank {ranks[0]}) | yes (rank "
            f"{ranks[1]}) | no (rank {ranks[2]} of 7) |") in doc


def test_the_summary_rows_of_the_anneal_and_the_sensitivity_order_are_quoted():
    doc = " ".join(_doc().split())
    right, wrong = (_load("training_floor", f"summary_halving_anneal_seed_{s}.json")
                    for s in (0, 1))
    rho = [(s["first_rung_unannealed_vs_grid_rank"]["spearman"],
            s["first_rung_vs_grid_rank"]["spearman"]) for s in (right, wrong)]
    assert (f"rung rho {rho[0][0]:+.2f} -> {rho[0][1]:+.2f} (seed 0) and {rho[1][0]:+.2f} -> "
            f"{rho[1][1]:+.2f} (seed 1) with the probe; seed 0 picks {right['pick']}-bit, the "
            f"grid's best; seed 1 picks {wrong['pick']}-bit, "
            f"{wrong['points_below_grid_best']:.2f} points below (pooled std "
            f"{wrong['pooled_std_points']:.2f}); {wrong['steps_ratio_to_grid_all_seeds']:.4f} of "
            "the grid's steps") in doc
    rows = _load("prior_order.json")["rows"]
    steps = sorted(r["steps_ratio_to_grid_all_seeds"] for r in rows)
    mobilenet = next(r for r in rows if r["setting"].startswith("MobileNetV2"))
    assert (f"one training ({steps[0]:.3f}-{steps[-1]:.3f} of the grids' steps)") in doc
    assert (f"picks {mobilenet['pick']} on MobileNetV2-CIFAR, rank "
            f"{mobilenet['grid_rank_of_pick']} of 7, {mobilenet['points_below_grid_best']:.2f} "
            f"points below {mobilenet['grid_best']} (pooled std "
            f"{mobilenet['pooled_std_points']:.2f})") in doc
