"""What one trained point is: the record that flows from :func:`tfq_pareto.experiment.run`
through the keras-tuner trials, the result files, the plots and the command line.

A :class:`TrialRecord` is written as a flat JSON object (``record.json`` of a run,
one entry of ``results.json``'s ``records``) and read back with
:meth:`TrialRecord.from_dict`, which also reads the files written before the
width was called ``width_multiplier`` (key ``"width"``).
"""

import dataclasses
import math

#: Trial states (keras-tuner's names) of a record.
COMPLETED = "COMPLETED"
FAILED = "FAILED"
INVALID = "INVALID"


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One point of a run, sweep or search: its precision, width, size and accuracy.

    Attributes:
      conv_bits, dw_bits: weight bits of standard and depthwise convs (``dw_bits``
        None for families without depthwise convs).
      width_multiplier: the family's width (None for a failed trial whose width
        was never found, e.g. an unreachable budget).
      status: ``"COMPLETED"``, ``"FAILED"`` or ``"INVALID"`` (keras-tuner's).
      trial_id, tuner_id: the keras-tuner trial and the process that trained it
        (None for a run outside a search).
      budget_bits: the Eq. (6) budget the width was solved for (None: width given).
      message: why a trial failed.
      size_bits, size_kib: Eq. (6) size of the QAT model.
      params, accuracy, loss, train_seconds, epochs_run: of the trained model.
      model_name, model_file, history_csv: the float model's name, the saved QAT
        model and its training history.
      config, recipe, dataset_info: the run's :class:`~tfq_pareto.experiment.RunConfig`,
        :class:`~tfq_pareto.training.Recipe` and dataset info, as dicts.
      flash_bytes, ram_bytes, macs: the exported model's flash (packed file),
        RAM (TFLM arena, upper bound with CMSIS-NN scratch) and MACs per
        inference, where measured (``tflite_export.fit_budget``).
      seed: the run's seed (:attr:`tfq_pareto.experiment.RunConfig.seed`).
      seeds, accuracies, accuracy_std, model_files: a point trained with several
        seeds (:func:`combine_seeds`): each seed, its accuracy, the accuracies'
        sample standard deviation (None for one seed) and each seed's model;
        ``accuracy`` is then their mean.
    """

    conv_bits: int
    dw_bits: int = None
    width_multiplier: float = None
    status: str = COMPLETED
    trial_id: str = None
    tuner_id: str = None
    budget_bits: float = None
    message: str = None
    size_bits: int = None
    size_kib: float = None
    params: int = None
    accuracy: float = None
    loss: float = None
    train_seconds: float = None
    epochs_run: int = None
    model_name: str = None
    model_file: str = None
    history_csv: str = None
    config: dict = None
    recipe: dict = None
    dataset_info: dict = None
    flash_bytes: int = None
    ram_bytes: int = None
    macs: int = None
    seed: int = None
    seeds: list = None
    accuracies: list = None
    accuracy_std: float = None
    model_files: list = None

    @property
    def done(self):
        """True when the point was trained and evaluated."""
        return self.accuracy is not None

    @property
    def label(self):
        """"1-bit" or "1/4-bit" (conv/depthwise): the precision as the plots name it."""
        if self.dw_bits is None:
            return f"{self.conv_bits}-bit"
        return f"{self.conv_bits}/{self.dw_bits}-bit"

    def to_dict(self):
        """A JSON-ready dict (the form of ``record.json`` and ``results.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The record of a dict written by :meth:`to_dict` (unknown keys are ignored).

        Files written before the rename carry ``"width"``; it is read as
        ``width_multiplier``, in the record and in its ``config``.
        """
        values = dict(values)
        if "width" in values and "width_multiplier" not in values:
            values["width_multiplier"] = values.pop("width")
        if isinstance(values.get("config"), dict):
            values["config"] = migrate_config(values["config"])
        if isinstance(values.get("config"), dict):  # a run's record.json of an older version
            for key in ("width_multiplier", "conv_bits", "dw_bits"):
                if values.get(key) is None:
                    values[key] = values["config"].get(key)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes):
        """A copy with ``changes`` (a record is immutable)."""
        return dataclasses.replace(self, **changes)


def migrate_config(config):
    """A stored RunConfig dict in today's names (``width`` -> ``width_multiplier``)."""
    config = dict(config)
    if "width" in config and "width_multiplier" not in config:
        config["width_multiplier"] = config.pop("width")
    return config


def sample_std(values):
    """Sample standard deviation (ddof 1) of one point's per-seed values; None for one value.

    The seed spread every comparison in the library reports (``accuracy_std`` of
    :func:`combine_seeds`, the ``stds`` of a halving rung).
    """
    values = list(values)
    if not values:
        raise ValueError("sample_std needs at least one value")
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def combine_seeds(records):
    """One record of a point trained with several seeds: the mean and the spread.

    Args:
      records: the :class:`TrialRecord` of each seed's run of the same point
        (same precision and width), first seed first.

    Returns:
      The first record with ``accuracy`` and ``loss`` the means over seeds,
      ``accuracies`` and ``seeds`` every seed's value, ``accuracy_std`` their
      sample standard deviation (ddof 1; None for a single seed), ``train_seconds``
      the total, and ``model_file`` the most accurate seed's model (``model_files``:
      all of them, in seed order).
    """
    records = list(records)
    if not records:
        raise ValueError("combine_seeds needs at least one record")
    accuracies = [r.accuracy for r in records]
    if any(a is None for a in accuracies):
        raise ValueError(f"every seed's run must be finished; accuracies {accuracies}")
    n = len(records)
    mean = sum(accuracies) / n
    std = sample_std(accuracies)
    losses = [r.loss for r in records if r.loss is not None]
    best = max(range(n), key=lambda i: accuracies[i])
    return records[0].replace(
        accuracy=mean, accuracy_std=std, accuracies=accuracies,
        seeds=[r.seed for r in records], seed=None if n > 1 else records[0].seed,
        loss=sum(losses) / len(losses) if len(losses) == n else None,
        train_seconds=sum(r.train_seconds or 0.0 for r in records),
        model_file=records[best].model_file, model_files=[r.model_file for r in records])


def point_key(record):
    """What identifies a point across seeds: its precision and its budget (or width)."""
    budget = record.budget_bits
    return (record.conv_bits, record.dw_bits,
            float(budget) if budget is not None else record.width_multiplier)


def combine_seed_runs(runs, key=point_key):
    """One record per point from several 1-seed runs of the same points.

    For a search whose seeds ran as separate processes (e.g. one 1-seed grid or
    sweep per seed, each with its own first seed).

    Args:
      runs: per seed (first seed first), the list of its :class:`TrialRecord` s.
      key: what identifies a point across runs (default :func:`point_key`).

    Returns:
      The records in first-seen order: a point every run finished is
      :func:`combine_seeds` of its runs; a point a run failed keeps that run's
      failed record, and one some runs lack is marked ``"INCOMPLETE"`` without an
      accuracy, so that a summary lists both as not done.

    Raises:
      ValueError: a point finished in several runs at different widths (not the
        same model, so not combinable).
    """
    runs = [list(run) for run in runs]
    by_point = {}
    for run in runs:
        for record in run:
            by_point.setdefault(key(record), []).append(record)
    combined = []
    for point, of_point in by_point.items():
        if len(of_point) == len(runs) and all(r.done for r in of_point):
            widths = sorted({r.width_multiplier for r in of_point})
            if len(widths) > 1:
                raise ValueError(f"point {point} has widths {widths} in different runs; they "
                                 f"are not the same model and cannot be combined")
            combined.append(combine_seeds(of_point))
        elif any(not r.done for r in of_point):
            combined.append(next(r for r in of_point if not r.done))
        else:  # finished, but not in every run: not comparable with the combined points
            combined.append(of_point[0].replace(
                accuracy=None, loss=None, status="INCOMPLETE",
                message=f"finished in {len(of_point)} of {len(runs)} seed runs"))
    return combined


def as_record(value):
    """A :class:`TrialRecord` from a record or a dict of one (e.g. read from results.json)."""
    if isinstance(value, TrialRecord):
        return value
    if isinstance(value, dict):
        return TrialRecord.from_dict(value)
    raise TypeError(f"expected a TrialRecord or a dict of one; received {type(value).__name__}")


def jsonable(value):
    """``value`` with every :class:`TrialRecord` inside (lists, tuples, dicts) as its dict."""
    if isinstance(value, TrialRecord):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
