"""keras-tuner over width x precision: one trial = build, quantize, train, evaluate.

``PrecisionTuner`` subclasses keras-tuner's ``BaseTuner`` (its ``Tuner`` rejects
tf_keras models, see the project's STACK notes) and overrides ``run_trial``:
the trial's hyperparameters give the precision (``conv_bits``, ``dw_bits``) and
either the ``width_multiplier`` or, with a size budget, the width is found by
:func:`tfq_pareto.width_for_size`. Every trial trains with
:func:`tfq_pareto.experiment.run` in its own folder of the keras-tuner project
directory (QAT model, history, record), so oracles, resuming from the project
directory and keras-tuner's distributed mode (``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``) all work unchanged.
"""

import dataclasses
import glob
import itertools
import math
import os

import keras_tuner as kt
from keras_tuner.engine import base_tuner

from tfq_pareto import checks, data, experiment, training
from tfq_pareto.records import COMPLETED, TrialRecord, combine_seeds
from tfq_pareto.width import width_for_size

#: Hyperparameter names.
HP_CONV_BITS = "conv_bits"
HP_DW_BITS = "dw_bits"
HP_WIDTH = "width_multiplier"
HP_BUDGET = "budget_bits"

#: Metric names a trial reports.
METRIC_ACCURACY = "val_accuracy"
METRIC_SIZE = "size_bits"

#: The objective of every search.
OBJECTIVE = kt.Objective(METRIC_ACCURACY, direction="max")

#: Oracles by name.
ORACLES = ("grid", "random", "bayesian", "hyperband")

# A failed trial (unreachable budget, NaN loss) is recorded and the search goes on.
_FAILURES = 10_000


class ResumableGridOracle(kt.Oracle):
    """Grid search over Choice/Fixed hyperparameters that survives being killed.

    keras-tuner 1.4.8's ``GridSearchOracle`` keeps its position in the grid only
    in memory: reloaded after a kill it fails with a KeyError on the next trial.
    This oracle derives the next point from the saved trials alone: the first
    grid point (in the order of the hyperparameters' values) that no finished
    or ongoing trial has. A trial killed while running is simply run again.

    ``allowed`` (a function of a point's values dict) keeps only some points of
    the product, e.g. a sweep over listed (conv_bits, dw_bits) pairs, not their
    cross product; the others are never tried.

    The grid is always the one given to this oracle, also when it resumes a
    project: keras-tuner's reload would put back the space saved with the
    project, so a sweep resumed with a longer width (or budget, or precision)
    list would silently train none of the new values. Finished trials of points
    the new grid lacks stay finished (and in the records); they are not retrained.
    """

    def __init__(self, *args, allowed=None, **kwargs):
        self.allowed = allowed
        super().__init__(*args, **kwargs)
        self._requested_space = self.hyperparameters.copy()

    def set_state(self, state):
        super().set_state(state)
        self.hyperparameters = self._requested_space.copy()

    def _grid(self):
        space = self.hyperparameters.space
        values = [list(hp.values) if hasattr(hp, "values") else [hp.value] for hp in space]
        for combination in itertools.product(*values):
            point = {hp.name: value for hp, value in zip(space, combination)}
            if self.allowed is None or self.allowed(point):
                yield point

    def populate_space(self, trial_id):
        taken = set()
        ongoing = {t.trial_id for t in self.ongoing_trials.values()}  # keyed by tuner id
        for trial in self.trials.values():
            finished = trial.status in ("COMPLETED", "FAILED", "INVALID")
            if finished or trial.trial_id in ongoing:
                taken.add(tuple(sorted(trial.hyperparameters.values.items())))
        for point in self._grid():
            if tuple(sorted(point.items())) not in taken:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": point}
        if self.ongoing_trials:
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


def make_oracle(name, hyperparameters, *, max_trials=None, max_epochs=None, seed=0,
                allowed=None):
    """A keras-tuner oracle over ``hyperparameters`` maximising validation accuracy.

    ``allowed`` (grid only): a function of a point's values that keeps some points
    of the grid (see :class:`ResumableGridOracle`).
    """
    if allowed is not None and name != "grid":
        raise ValueError(f"allowed points are supported by the 'grid' oracle only; "
                         f"received oracle {name!r}")
    if name == "grid":
        return ResumableGridOracle(objective=OBJECTIVE, max_trials=max_trials, allowed=allowed,
                                   hyperparameters=hyperparameters, seed=seed,
                                   max_consecutive_failed_trials=_FAILURES)
    if name == "random":
        return kt.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=max_trials or 10,
                                             hyperparameters=hyperparameters, seed=seed,
                                           max_consecutive_failed_trials=_FAILURES)
    if name == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(
            objective=OBJECTIVE, max_trials=max_trials or 10, hyperparameters=hyperparameters,
            seed=seed, max_consecutive_failed_trials=_FAILURES)
    if name == "hyperband":
        return kt.oracles.HyperbandOracle(objective=OBJECTIVE, max_epochs=max_epochs or 9,
                                          factor=3, hyperparameters=hyperparameters, seed=seed,
                                           max_consecutive_failed_trials=_FAILURES)
    raise ValueError(f"oracle must be one of {ORACLES}; received {name!r}")


#: File in a trial's folder naming the tuner process (KERASTUNER_TUNER_ID) that trained it.
WORKER_FILE = "tuner_id.txt"

#: File in a trial's folder with the trial's record: every seed combined (mean, spread).
TRIAL_RECORD_FILE = "trial_record.json"


def seed_dir(trial_dir, index, seed):
    """Where seed number ``index`` (value ``seed``) of a trial trains: the first in the
    trial's folder itself, the others in ``seed_<seed>/`` inside it."""
    return trial_dir if index == 0 else os.path.join(trial_dir, f"seed_{seed}")


def _read_worker(trial_dir):
    path = os.path.join(trial_dir, WORKER_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip() or None


class PrecisionTuner(base_tuner.BaseTuner):
    """Trains one (precision, width) point per trial and reports accuracy and Eq. (6) size.

    Args:
      oracle: a keras-tuner oracle (see :func:`make_oracle`).
      base_config: :class:`tfq_pareto.experiment.RunConfig` whose precision and
        width the trials replace.
      recipe: :class:`tfq_pareto.training.Recipe`; Hyperband's ``tuner/epochs``
        overrides its epochs.
      datasets: ``(train, test, info)`` from :func:`tfq_pareto.data.load`.
      directory, project_name, overwrite: the keras-tuner project directory.
      strategy: a ``tf.distribute`` strategy each trial trains with.
      verbose: Keras progress of each trial.
      tolerance: relative tolerance of the width search under a budget.
      measure: optional ``measure(record, datasets) -> dict`` called after each
        trial trains, whose fields (e.g. ``flash_bytes``, ``ram_bytes``, ``macs``
        of the exported model) are added to the trial's record. The library
        does not export; the command line passes the exporter's measurement.
      seeds: every trial trains this many times, with seeds ``s, s+1, ...``
        (``s`` = ``base_config.seed``, 0 when None), each in its own folder and
        resumable on its own (:func:`seed_dir`); the trial reports the mean
        accuracy, and its record every seed's value and their standard
        deviation (:func:`tfq_pareto.records.combine_seeds`).
    """

    def __init__(self, oracle, *, base_config, recipe, datasets, directory, project_name,
                 overwrite=False, strategy=None, verbose=0, tolerance=0.03, measure=None,
                 seeds=1, **kwargs):
        self.seeds = checks.check_int("seeds", seeds)
        self.base_config = base_config
        self.recipe = recipe
        self.datasets = data.as_datasets(datasets)
        self.strategy = strategy
        self.run_verbose = verbose
        self.tolerance = tolerance
        self.measure = measure
        super().__init__(oracle=oracle, hypermodel=None, directory=directory,
                         project_name=project_name, overwrite=overwrite, **kwargs)

    def trial_config(self, hyperparameters):
        """The RunConfig a trial's hyperparameters stand for (width solved under a budget)."""
        values = hyperparameters.values
        conv_bits = int(values[HP_CONV_BITS])
        dw_bits = values.get(HP_DW_BITS)
        dw_bits = None if dw_bits is None else int(dw_bits)
        config = dataclasses.replace(self.base_config, conv_bits=conv_bits, dw_bits=dw_bits)
        if HP_BUDGET in values:
            info = self.datasets.info

            def builder(width):
                return experiment.build_float_model(
                    dataclasses.replace(config, width_multiplier=width), info)

            try:
                width = width_for_size(builder, float(values[HP_BUDGET]), conv_bits=conv_bits,
                                       dw_bits=dw_bits, tolerance=self.tolerance)
            except ValueError as err:
                raise kt.errors.FailedTrialError(
                    f"{conv_bits}/{dw_bits}-bit: budget unreachable: {err}") from err
            return dataclasses.replace(config, width_multiplier=round(width, 4))
        return dataclasses.replace(config, width_multiplier=float(values[HP_WIDTH]))

    def run_trial(self, trial, *args, **kwargs):
        config = self.trial_config(trial.hyperparameters)
        recipe = self.recipe
        epochs = trial.hyperparameters.values.get("tuner/epochs")
        if epochs:
            recipe = recipe.with_epochs(int(epochs))
        trial_dir = self.get_trial_dir(trial.trial_id)
        os.makedirs(trial_dir, exist_ok=True)
        with open(os.path.join(trial_dir, WORKER_FILE), "w", encoding="utf-8") as f:
            f.write(self.tuner_id)  # which process of a distributed search trained it
        first_seed = config.seed or 0
        runs = []
        for index in range(self.seeds):
            seed = first_seed + index
            out_dir = seed_dir(trial_dir, index, seed)
            os.makedirs(out_dir, exist_ok=True)
            record = experiment.run(dataclasses.replace(config, seed=seed), recipe,
                                    out_dir=out_dir,
                                    verbose=self.run_verbose, strategy=self.strategy,
                                    datasets=self.datasets)
            if not math.isfinite(record.loss):
                raise kt.errors.FailedTrialError(
                    f"seed {seed}: loss is {record.loss} (training diverged)")
            runs.append(record)
        record = combine_seeds(runs)
        if self.measure is not None:
            record = record.replace(**self.measure(record, self.datasets))
        training.write_json(os.path.join(trial_dir, TRIAL_RECORD_FILE), record.to_dict())
        return {METRIC_ACCURACY: record.accuracy, METRIC_SIZE: float(record.size_bits)}

    def _saved_trials(self):
        """The trials saved in the project directory (works on a chief, a worker or alone)."""
        trials = []
        for path in sorted(glob.glob(os.path.join(self.project_dir, "trial_*", "trial.json"))):
            trials.append(kt.engine.trial.Trial.load(path))
        return trials

    def trial_records(self):
        """One :class:`~tfq_pareto.records.TrialRecord` per finished trial.

        Read from the trials saved in the project directory, so that every process
        of a distributed search sees all of them; running (or killed) trials are
        left out. A completed trial's record is its seeds combined
        (``trial_record.json``; a trial of an older version: its run's
        ``record.json``) with the trial's id, status, budget and worker added.
        """
        import json  # pylint: disable=import-outside-toplevel

        records = []
        for trial in self._saved_trials():
            if trial.status not in ("COMPLETED", "FAILED", "INVALID"):
                continue
            values = trial.hyperparameters.values
            dw_bits = values.get(HP_DW_BITS)
            trial_fields = {
                "conv_bits": int(values[HP_CONV_BITS]),
                "dw_bits": None if dw_bits is None else int(dw_bits),
                "trial_id": trial.trial_id,
                "status": str(trial.status),
                "budget_bits": values.get(HP_BUDGET),
                "message": getattr(trial, "message", None),
                "tuner_id": _read_worker(self.get_trial_dir(trial.trial_id)),
            }
            record_path = os.path.join(self.get_trial_dir(trial.trial_id), TRIAL_RECORD_FILE)
            if not os.path.exists(record_path):
                record_path = os.path.join(self.get_trial_dir(trial.trial_id),
                                           experiment.RECORD_FILE)
            if trial.status == COMPLETED and os.path.exists(record_path):
                with open(record_path, encoding="utf-8") as f:
                    record = TrialRecord.from_dict(json.load(f)).replace(**trial_fields)
            else:
                record = TrialRecord(width_multiplier=values.get(HP_WIDTH), **trial_fields)
            records.append(record)
        return records
