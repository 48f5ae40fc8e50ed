"""One training run of a model family at a width and precision: the unit the CLI, the demo
and the search are made of. Writes its QAT model and a JSON record into ``out_dir``."""

import dataclasses
import os
import time

from tfq_pareto import data as data_lib
from tfq_pareto import checks, graph, training
from tfq_pareto.backend import keras
from tfq_pareto.models import FAMILIES, family_builder
from tfq_pareto.quantizers import check_bits
from tfq_pareto.records import TrialRecord, migrate_config
from tfq_pareto.saving import save_model
from tfq_pareto.scheme import apply
from tfq_pareto.size import model_size

#: File names inside a run's out_dir.
RECORD_FILE = "record.json"
MODEL_FILE = "model.h5"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to train: a family at a width multiplier, its precision, and the data.

    ``dw_fan_in`` ("CxKxK", e.g. "4x3x3"; vgg11 variants only) sets the depthwise
    convs' fan-in as in Table 2 (:data:`tfq_pareto.models.vgg.TABLE2_FAN_INS`).
    ``act_bits=None`` (the default) takes the recipe's activation bits when the
    run starts (:attr:`tfq_pareto.training.Recipe.act_bits`: 4 for the CIFAR
    preset, 8 for the ImageNet ones, as in Sec. 3).
    ``seed``: an int seeds the run (Python, NumPy and TF random state, so the
    initial weights, and the training set's shuffle and augmentation); None (the
    default) leaves the process's random state as it is. The searches' ``seeds=N``
    trains every point with seeds 0..N-1 (offset by this seed when set).
    """

    model: str = "resnet_cifar"
    depth: int = 20
    variant: str = None
    width_multiplier: float = 1.0
    conv_bits: int = 1
    dw_bits: int = None
    first_last_bits: int = 8
    act_bits: int = None
    dataset: str = "digits"
    dw_fan_in: str = None
    seed: int = None

    def __post_init__(self):
        if self.model not in FAMILIES:
            raise ValueError(f"model must be one of {sorted(FAMILIES)}; received {self.model!r}")
        check_bits("conv_bits", self.conv_bits)
        if self.dw_bits is not None:
            check_bits("dw_bits", self.dw_bits)
        check_bits("first_last_bits", self.first_last_bits)
        if self.act_bits is not None:
            check_bits("act_bits", self.act_bits, range(2, 9))
        checks.check_positive("width_multiplier", self.width_multiplier)
        if self.dw_fan_in is not None:
            if self.model != "vgg11":
                raise ValueError(f"dw_fan_in applies to model 'vgg11' only; received model "
                                 f"{self.model!r} with dw_fan_in={self.dw_fan_in!r}")
            parse_fan_in(self.dw_fan_in)
        if self.seed is not None:
            checks.check_int("seed", self.seed, minimum=0)

    @classmethod
    def from_dict(cls, values):
        """The config of a stored dict (``record.json``, ``results.json``); files written
        before the rename carry ``width``, read as ``width_multiplier``."""
        values = migrate_config(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig fields {unknown}; allowed: {sorted(names)}")
        return cls(**values)


def parse_fan_in(text):
    """"CxKxK" -> (C, K), e.g. "4x3x3" -> (4, 3): a depthwise fan-in d = C x K x K of Table 2."""
    parts = text.split("x") if isinstance(text, str) else []
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts) or parts[1] != parts[2]:
        raise ValueError(f"dw_fan_in must be 'CxKxK' with a square kernel, e.g. '4x3x3'; "
                         f"received {text!r}")
    return int(parts[0]), int(parts[1])


def build_float_model(config, info):
    """The float model of ``config`` for images and classes of ``info``."""
    builder = family_builder(
        config.model, depth=config.depth if config.model == "resnet_cifar" else None,
        variant=config.variant if config.model == "vgg11" else None,
        dw_fan_in=None if config.dw_fan_in is None else parse_fan_in(config.dw_fan_in),
        num_classes=info.num_classes, input_shape=info.image_shape)
    return builder(config.width_multiplier)


def has_depthwise(model):
    return any(isinstance(l, keras.layers.SeparableConv2D) or graph.is_depthwise(l)
               for l in model.layers)


def check_config(config, info):
    """Errors that must come before training: --dw-bits on a model without depthwise convs."""
    model = build_float_model(config, info)
    depthwise = has_depthwise(model)
    if config.dw_bits is not None and not depthwise:
        raise ValueError(
            f"dw_bits={config.dw_bits} but model {config.model!r} has no depthwise convs; "
            "leave dw_bits out"
        )
    return model, depthwise


def run(config, recipe, *, out_dir, data_dir=None, download=False, image_size=16, verbose=1,
        strategy=None, datasets=None):
    """Trains and evaluates ``config`` with ``recipe``; resumes from ``out_dir``.

    A finished run (its record exists with the same config and recipe) is not
    retrained: its record is returned. A config without ``act_bits`` gets the
    recipe's, and the record holds the value used.

    Returns:
      A :class:`tfq_pareto.records.TrialRecord` (also written to ``out_dir/record.json``).
    """
    if config.act_bits is None:
        config = dataclasses.replace(config, act_bits=recipe.act_bits)
    record_path = os.path.join(out_dir, RECORD_FILE)
    wanted = {"config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe)}
    if os.path.exists(record_path):
        import json  # pylint: disable=import-outside-toplevel

        with open(record_path, encoding="utf-8") as f:
            stored = json.load(f)
        if isinstance(stored.get("config"), dict):
            stored["config"] = migrate_config(stored["config"])
            stored["config"].setdefault("seed", None)  # written before runs had a seed
        if all(stored.get(k) == v for k, v in wanted.items()):
            return TrialRecord.from_dict(stored)
    train_raw, test_raw, info = data_lib.as_datasets(datasets) if datasets else data_lib.load(
        config.dataset, data_dir=data_dir, download=download, image_size=image_size)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)  # before any weight is made
    float_model, depthwise = check_config(config, info)
    one_hot = bool(recipe.label_smoothing)
    train_data = data_lib.pipeline(train_raw, info, training=True, batch_size=recipe.batch_size,
                                   one_hot=one_hot, seed=config.seed or 0)
    test_data = data_lib.pipeline(test_raw, info, training=False, batch_size=recipe.batch_size,
                                  one_hot=one_hot)
    steps = -(-info.num_train // recipe.batch_size)
    dw_bits = config.dw_bits if depthwise else None
    if depthwise and dw_bits is None:
        dw_bits = config.conv_bits

    def build():
        return apply(build_float_model(config, info), conv_bits=config.conv_bits, dw_bits=dw_bits,
                     first_last_bits=config.first_last_bits, act_bits=config.act_bits)

    start = time.perf_counter()
    # The last checkpoint stays until record.json is written: a process killed in between
    # (evaluation, saving) resumes with zero epochs left instead of training again.
    model, history = training.train(build, train_data, test_data, recipe, steps_per_epoch=steps,
                                    out_dir=out_dir, verbose=verbose, strategy=strategy,
                                    keep_backup=True)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(test_data, verbose=0)
    save_model(model, os.path.join(out_dir, MODEL_FILE))
    size_bits = model_size(model)
    record = TrialRecord(
        conv_bits=config.conv_bits, dw_bits=dw_bits, width_multiplier=config.width_multiplier,
        seed=config.seed, config=wanted["config"], recipe=wanted["recipe"], model_name=float_model.name,
        dataset_info=dataclasses.asdict(info), size_bits=size_bits, size_kib=size_bits / 8192,
        params=float_model.count_params(), accuracy=float(accuracy), loss=float(loss),
        train_seconds=seconds, epochs_run=len(history.get("epoch", [])) or recipe.epochs,
        history_csv=os.path.join(out_dir, "history.csv"),
        model_file=os.path.join(out_dir, MODEL_FILE))
    training.write_json(record_path, record.to_dict())
    training.remove_backup(out_dir)
    return record
