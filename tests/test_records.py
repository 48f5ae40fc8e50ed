"""TrialRecord: the record of one point, as runs, tuners, result files and the CLI pass it on;
and the width_multiplier name, with files and arguments written under the old name."""

import csv
import dataclasses
import json
import os

import pytest

from tfq_pareto import TrialRecord, data, experiment, search, training
from tfq_pareto.records import as_record, jsonable
from tfq_pareto_cli import cli

RECIPE = training.Recipe(epochs=1, warmup_epochs=0, batch_size=32)


def _record(**changes):
    values = dict(conv_bits=1, dw_bits=4, width_multiplier=1.5, size_bits=8192, size_kib=1.0,
                  params=100, accuracy=0.5, loss=1.0, train_seconds=2.0)
    values.update(changes)
    return TrialRecord(**values)


def test_record_round_trips_through_json():
    record = _record(config={"model": "mobilenet_v2_cifar", "width_multiplier": 1.5})
    again = TrialRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert record.label == "1/4-bit" and _record(dw_bits=None).label == "1-bit"
    assert record.done and not _record(accuracy=None, status="FAILED").done
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.accuracy = 0.9  # records are values
    assert record.replace(accuracy=0.9).accuracy == 0.9 and record.accuracy == 0.5


def test_records_written_under_the_old_width_name_are_read():
    # A sweep row and a run's record.json as the versions before the rename wrote them.
    row = {"trial_id": "00", "status": "COMPLETED", "conv_bits": 8, "dw_bits": None,
           "width": 0.25, "size_bits": 100, "accuracy": 0.7, "unknown_column": 1}
    assert TrialRecord.from_dict(row).width_multiplier == 0.25
    run = {"config": {"model": "resnet_cifar", "width": 0.5, "conv_bits": 2, "dw_bits": None},
           "size_bits": 5, "accuracy": 0.1}
    record = TrialRecord.from_dict(run)
    assert (record.conv_bits, record.width_multiplier) == (2, 0.5)
    assert record.config["width_multiplier"] == 0.5 and "width" not in record.config
    config = experiment.RunConfig.from_dict(run["config"])
    assert config.width_multiplier == 0.5
    with pytest.raises(ValueError, match=r"unknown RunConfig fields \['colour'\]"):
        experiment.RunConfig.from_dict({"colour": "red"})
    with pytest.raises(TypeError, match="TrialRecord or a dict"):
        as_record([1, 2])


def test_jsonable_turns_nested_records_into_dicts():
    record = _record()
    value = jsonable({"best": record, "records": [record], "n": 1})
    assert value == {"best": record.to_dict(), "records": [record.to_dict()], "n": 1}
    json.dumps(value)


def test_a_finished_run_stored_under_the_old_name_is_not_retrained(tmp_path, monkeypatch):
    config = experiment.RunConfig(model="resnet_cifar", width_multiplier=0.5, conv_bits=2,
                                  act_bits=4)
    stored = {"config": {**dataclasses.asdict(config), "width": 0.5},
              "recipe": dataclasses.asdict(RECIPE), "size_bits": 123, "accuracy": 0.42,
              "loss": 1.5, "model_file": "m.h5"}
    del stored["config"]["width_multiplier"]
    (tmp_path / experiment.RECORD_FILE).write_text(json.dumps(stored))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train", no_training)
    record = experiment.run(config, RECIPE, out_dir=str(tmp_path))
    assert isinstance(record, TrialRecord)
    assert (record.accuracy, record.width_multiplier, record.conv_bits) == (0.42, 0.5, 2)


def _tiny_datasets():
    train, test, info = data.load("digits")
    return data.Datasets(train.take(32), test.take(32),
                         dataclasses.replace(info, num_train=32, num_test=32))


def _fake_run(calls):
    """experiment.run without training: accuracy and size follow the precision and width."""

    def run(config, recipe, *, out_dir, **kwargs):
        calls.append(config)
        size = int(1000 * config.conv_bits * config.width_multiplier ** 2)
        record = TrialRecord(conv_bits=config.conv_bits, dw_bits=config.dw_bits,
                           width_multiplier=config.width_multiplier, size_bits=size,
                           size_kib=size / 8192, params=10, accuracy=0.5 + 0.1 * config.conv_bits
                           / 8 + 0.1 * config.width_multiplier, loss=1.0, train_seconds=0.1,
                           config=dataclasses.asdict(config))
        training.write_json(os.path.join(out_dir, experiment.RECORD_FILE), record.to_dict())
        return record

    return run


def test_sweep_passes_records_through_and_trains_only_the_listed_pairs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "run", _fake_run(calls))
    base = experiment.RunConfig(model="mobilenet_v2_cifar", dataset="digits")
    result = search.sweep(base, bits=[(1, 4), (8, 8)], width_multipliers=[0.25, 0.5],
                          recipe=RECIPE, out_dir=str(tmp_path), datasets=_tiny_datasets())
    records = result["records"]
    # Only the two listed pairs at two widths: the cross product's (1, 8) and (8, 4) are
    # never tried, so no trial is recorded as failed for them.
    assert all(isinstance(r, TrialRecord) for r in records)
    assert sorted((r.conv_bits, r.dw_bits, r.width_multiplier) for r in records) == [
        (1, 4, 0.25), (1, 4, 0.5), (8, 8, 0.25), (8, 8, 0.5)]
    assert len(calls) == 4 and all(r.status == "COMPLETED" and r.trial_id for r in records)
    assert all(r.accuracy == 0.5 + 0.1 * r.conv_bits / 8 + 0.1 * r.width_multiplier
               for r in records)
    # Sizes 62 < 250 < 500 < 2000 bits with rising accuracy: all four on the front.
    assert [(r.conv_bits, r.width_multiplier) for r in result["front"]] == [
        (1, 0.25), (1, 0.5), (8, 0.25), (8, 0.5)]
    saved = json.loads((tmp_path / search.run.RESULTS_JSON).read_text())
    assert [TrialRecord.from_dict(r) for r in saved["records"]] == [
        r.replace(config=saved["records"][i]["config"]) for i, r in enumerate(records)]
    with open(tmp_path / search.run.RESULTS_CSV, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {float(r["width_multiplier"]) for r in rows} == {0.25, 0.5}
    assert search.replot(str(tmp_path)) == [str(tmp_path / "pareto.png")]


def test_a_sweep_resumed_with_more_widths_trains_only_the_new_ones(tmp_path, monkeypatch):
    # keras-tuner's reload restores the grid saved with the project; the sweep must use
    # the one it is given, or the added width is silently never trained.
    calls = []
    monkeypatch.setattr(experiment, "run", _fake_run(calls))
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    kwargs = dict(bits=[1], recipe=RECIPE, out_dir=str(tmp_path), datasets=_tiny_datasets())
    search.sweep(base, width_multipliers=[0.25], **kwargs)
    assert [c.width_multiplier for c in calls] == [0.25]
    result = search.sweep(base, width_multipliers=[0.25, 0.5], **kwargs)
    assert [c.width_multiplier for c in calls] == [0.25, 0.5]  # 0.25 is not retrained
    assert sorted(r.width_multiplier for r in result["records"]) == [0.25, 0.5]
    # A shorter list trains nothing and keeps the finished trials in the records.
    result = search.sweep(base, width_multipliers=[0.5], **kwargs)
    assert len(calls) == 2 and len(result["records"]) == 2


def test_budget_of_and_sweep_accept_the_old_width_names(tmp_path):
    info = _tiny_datasets().info
    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    assert search.budget_of(base, info, width=0.5) == search.budget_of(base, info,
                                                                       width_multiplier=0.5)
    with pytest.raises(ValueError, match="received both"):
        search.budget_of(base, info, width=0.5, width_multiplier=0.5)
    with pytest.raises(ValueError, match="width_multiplier must be a number > 0"):
        search.budget_of(base, info, width_multiplier=0)


@pytest.mark.parametrize("flag", ["--width", "--width-multiplier"])
def test_the_cli_takes_both_width_flags(flag):
    args = cli.build_parser().parse_args(["size", "--model", "resnet_cifar", "--conv-bits", "1",
                                          flag, "1.5"])
    assert args.width_multiplier == 1.5
    sweep = cli.build_parser().parse_args(["sweep", "--model", "resnet_cifar", "--bits", "1",
                                           "--out", "o", flag + "s", "0.5,1"])
    assert sweep.width_multipliers == [0.5, 1.0]


def test_measured_records_carry_flash_ram_and_macs_and_plot_on_them(tmp_path, monkeypatch):
    calls, measured = [], []
    monkeypatch.setattr(experiment, "run", _fake_run(calls))

    def measure(record, datasets):
        measured.append(record.trial_id)
        return {"flash_bytes": 1000 * record.conv_bits, "ram_bytes": 2000, "macs": 3}

    base = experiment.RunConfig(model="resnet_cifar", dataset="digits")
    kwargs = dict(bits=[1, 8], width_multipliers=[0.5], recipe=RECIPE, datasets=_tiny_datasets())
    result = search.sweep(base, out_dir=str(tmp_path / "m"), measure=measure, **kwargs)
    assert sorted(r.flash_bytes for r in result["records"]) == [1000, 8000]
    assert len(measured) == 2 and all(r.macs == 3 for r in result["records"])
    rows = list(csv.DictReader(open(tmp_path / "m" / search.run.RESULTS_CSV, encoding="utf-8")))
    assert sorted(int(r["flash_bytes"]) for r in rows) == [1000, 8000]
    for axis in ("eq6", "flash", "ram", "macs"):
        assert search.replot(str(tmp_path / "m"), size_axis=axis)
    # Without measurements the flash axis names what is missing and how to get it.
    search.sweep(base, out_dir=str(tmp_path / "plain"), **kwargs)
    with pytest.raises(ValueError, match="needs flash_bytes.*--measure-fit"):
        search.replot(str(tmp_path / "plain"), size_axis="flash")
    with pytest.raises(ValueError, match="size_axis must be one of"):
        search.replot(str(tmp_path / "m"), size_axis="weight")


def test_a_run_killed_after_training_but_before_its_record_trains_no_epoch_again(
        tmp_path, monkeypatch):
    """The kill window that tests/test_reliability.py hit at random: fit has finished, the
    record is not written yet (evaluation, saving). The rerun must not train from epoch 0."""
    config = experiment.RunConfig(model="resnet_cifar", depth=20, width_multiplier=0.25,
                                  conv_bits=1, act_bits=8, dataset="digits", seed=0)
    recipe = training.Recipe(epochs=2, warmup_epochs=0, batch_size=32)
    real_save = experiment.save_model

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies while saving the trained model

    monkeypatch.setattr(experiment, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(config, recipe, out_dir=str(tmp_path), datasets=_tiny_datasets(),
                       verbose=0)
    assert not (tmp_path / experiment.RECORD_FILE).exists()
    assert (tmp_path / "backup").is_dir()  # the last epoch's checkpoint outlives fit
    epochs_begun = []
    real_train = training.train

    def train(*args, **kwargs):
        class Count(training.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                epochs_begun.append(epoch)

        return real_train(*args, callbacks=[Count()], **kwargs)

    monkeypatch.setattr(experiment, "save_model", real_save)
    monkeypatch.setattr(training, "train", train)
    record = experiment.run(config, recipe, out_dir=str(tmp_path), datasets=_tiny_datasets(),
                            verbose=0)
    assert epochs_begun == []  # both epochs were done: none is trained again
    with open(tmp_path / "history.csv", newline="", encoding="utf-8") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1]
    assert record.epochs_run == 2 and record.accuracy is not None
    assert not (tmp_path / "backup").exists()  # deleted once the record is written
