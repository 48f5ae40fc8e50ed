"""The paper's training recipe (Appendix A) and a resumable training loop.

CIFAR (Appendix A): "a learning rate of 0.05, cosine learning rate decay, linear
learning rate warmup (from 0 to 0.05) with 5 epochs, batch size of 128, total
training epoch of 300, weight decay of 5e-4, SGD optimizer with Nesterov
acceleration and 0.9 momentum"; 4-bit activations (Sec. 3). ImageNet: batch
256, weight decay 4e-5, label smoothing 0.1, 90 epochs (ResNet) or 120
(MobileNetV2); 8-bit activations. Every number is a field of :class:`Recipe`
and can be overridden.

Weight decay is the L2 term of SGD, as in the SGD of the paper's framework
(PyTorch's ``weight_decay``): ``wd * w`` is added to the gradient *before* the
momentum (:class:`L2SGD`), not tf_keras's decoupled ``weight_decay`` (which
subtracts ``lr * wd * w`` after the momentum update and so, with momentum 0.9,
is about 10x weaker: the L2 term is accumulated by the momentum buffer,
1 / (1 - 0.9) = 10 times over). Scope: conv, depthwise and dense kernels
(every variable whose name contains "kernel"); biases, BatchNorm's gamma and
beta and the quantizers' range variables do not decay. The paper does not say
which variables decay; excluding BN and biases is the common CIFAR practice.

:func:`train` checkpoints every epoch (``BackupAndRestore``) and resumes from
the last finished epoch when started again with the same ``out_dir``; writes a
CSV history and TensorBoard logs; ``verbose=0`` silences the progress bar.
"""

import dataclasses
import json
import math
import os
import time

from tfq_pareto import checks
from tfq_pareto.backend import keras, tf

#: Names of the metrics train() reports.
ACCURACY = "accuracy"
VAL_ACCURACY = "val_accuracy"

#: Regex of the variable names excluded from weight decay: all but conv/dense kernels.
NO_DECAY = r"^(?!.*kernel)"

#: tf.distribute strategies ``make_strategy`` knows.
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Training hyperparameters (Appendix A); ``dataclasses.replace`` to override."""

    epochs: int = 300
    batch_size: int = 128
    learning_rate: float = 0.05
    warmup_epochs: float = 5
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    act_bits: int = 4

    def __post_init__(self):
        checks = {
            "epochs": isinstance(self.epochs, int) and self.epochs >= 1,
            "batch_size": isinstance(self.batch_size, int) and self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "warmup_epochs": 0 <= self.warmup_epochs <= self.epochs,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "act_bits": (isinstance(self.act_bits, int) and not isinstance(self.act_bits, bool)
                         and 2 <= self.act_bits <= 8),
        }
        allowed = {
            "epochs": "an int >= 1", "batch_size": "an int >= 1", "learning_rate": "> 0",
            "warmup_epochs": "in 0..epochs", "momentum": "in [0, 1)", "weight_decay": ">= 0",
            "label_smoothing": "in [0, 1)", "act_bits": "an int in 2..8",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"{name} must be {allowed[name]}; received {getattr(self, name)!r}"
                )

    def with_epochs(self, epochs):
        """This recipe run for ``epochs`` epochs, its warm-up shortened to fit.

        The one rule for short runs: the warm-up is kept unless it would leave
        less than one epoch of cosine decay, then it becomes ``epochs - 1``
        (0 for a one-epoch run). Everything else is unchanged.
        """
        checks.check_int("epochs", epochs)
        return dataclasses.replace(self, epochs=epochs,
                                   warmup_epochs=min(self.warmup_epochs, epochs - 1))


#: Appendix A presets; activation bits of Sec. 3 (4 on CIFAR, 8 on ImageNet).
CIFAR = Recipe()
IMAGENET_RESNET = Recipe(epochs=90, batch_size=256, weight_decay=4e-5, label_smoothing=0.1,
                         act_bits=8)
IMAGENET_MOBILENET = dataclasses.replace(IMAGENET_RESNET, epochs=120)


@keras.utils.register_keras_serializable(package="tfq_pareto")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to 0.

    lr(step) = peak * step / warmup                       for step < warmup
             = peak * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2   after
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(max(total_steps, warmup_steps + 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        decay_steps = tf.cast(self.total_steps - self.warmup_steps, tf.float32)
        progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return tf.where(step < warmup, self.peak * step / warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


@keras.utils.register_keras_serializable(package="tfq_pareto")
class LinearAnneal(keras.optimizers.schedules.LearningRateSchedule):
    """A linear decay from ``start_lr`` at global step ``start_step`` to 0 over ``steps`` steps.

    lr(step) = start_lr * (1 - (step - start_step) / steps), clipped to [0, start_lr]

    so the ``steps`` updates from ``start_step`` use start_lr, ..., start_lr / steps. It is
    the short anneal of :func:`tfq_pareto.search.halving_search` (``anneal``): the learning
    rate a pair has reached at a rung, brought down to 0 before it is evaluated.
    """

    def __init__(self, start_lr, start_step, steps):
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be an int >= 1; received {steps!r}")
        self.start_lr = float(start_lr)
        self.start_step = int(start_step)
        self.steps = steps

    def __call__(self, step):
        progress = (tf.cast(step, tf.float32) - self.start_step) / self.steps
        return self.start_lr * (1.0 - tf.clip_by_value(progress, 0.0, 1.0))

    def get_config(self):
        return {"start_lr": self.start_lr, "start_step": self.start_step, "steps": self.steps}


@keras.utils.register_keras_serializable(package="tfq_pareto")
class L2SGD(keras.optimizers.SGD):
    """tf_keras SGD whose weight decay is the L2 term added to the gradient before momentum.

    For a decayed variable w with gradient g, momentum mu and learning rate lr,
    one step is (tf_keras's SGD on the gradient ``g + l2 * w``)::

        g' = g + l2 * w
        m  = mu * m - lr * g'
        w  = w + m                       (or w + mu * m - lr * g' with Nesterov)

    which is PyTorch's ``SGD(weight_decay=l2)`` (Appendix A's SGD) up to where
    the learning rate enters the momentum buffer (identical for a constant lr).
    tf_keras's own ``weight_decay`` is decoupled (AdamW-style) and is not used.

    Args:
      l2: the L2 coefficient (Appendix A: 5e-4 CIFAR, 4e-5 ImageNet); 0 for none.
      decay_exclude: regexes of variable names that do not decay
        (default :data:`NO_DECAY`: all but kernels).
      **kwargs: tf_keras ``SGD`` arguments (``learning_rate``, ``momentum``,
        ``nesterov``, ...), except ``weight_decay``.
    """

    def __init__(self, l2=0.0, decay_exclude=(NO_DECAY,), name="L2SGD", **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("L2SGD applies weight decay as an L2 term: give l2, not "
                             f"weight_decay; received weight_decay={kwargs['weight_decay']!r}")
        kwargs.pop("weight_decay", None)
        super().__init__(name=name, **kwargs)
        if not (isinstance(l2, (int, float)) and l2 >= 0):
            raise ValueError(f"l2 must be a number >= 0; received {l2!r}")
        self.l2 = float(l2)
        self.decay_exclude = tuple(decay_exclude)
        self.exclude_from_weight_decay(var_names=list(self.decay_exclude))

    def update_step(self, gradient, variable):
        if self.l2 and self._use_weight_decay(variable):
            gradient = tf.convert_to_tensor(gradient) + tf.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update({"l2": self.l2, "decay_exclude": list(self.decay_exclude)})
        return config


def make_schedule(recipe, steps_per_epoch):
    """The recipe's :class:`WarmupCosine` learning rate over its whole schedule, in steps."""
    return WarmupCosine(recipe.learning_rate, round(recipe.warmup_epochs * steps_per_epoch),
                        recipe.epochs * steps_per_epoch)


def make_optimizer(recipe, steps_per_epoch, learning_rate=None):
    """:class:`L2SGD` (Nesterov) with the warm-up + cosine schedule; L2 decay on kernels only.

    ``learning_rate`` (a number or a schedule) replaces the recipe's schedule, e.g. for a
    short anneal from a checkpoint (:func:`tfq_pareto.search.halving_search`'s ``anneal``).
    """
    if learning_rate is None:
        learning_rate = make_schedule(recipe, steps_per_epoch)
    return L2SGD(l2=recipe.weight_decay, learning_rate=learning_rate, momentum=recipe.momentum,
                 nesterov=recipe.nesterov)


def outputs_logits(model):
    """False when the model's output layer ends in a softmax (then the loss takes probabilities)."""
    layer = model.layers[-1]
    layer = getattr(layer, "layer", layer)
    activation = getattr(layer, "activation", None)
    activation = getattr(activation, "activation", activation)  # tfmot QuantizeAwareActivation
    if isinstance(layer, keras.layers.Softmax):
        return False
    return getattr(activation, "__name__", "") != "softmax"


def make_loss(label_smoothing=0.0, from_logits=True):
    """Cross-entropy; with label smoothing the labels must be one-hot (``pipeline(one_hot=True)``)."""
    if label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                    label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def make_strategy(name="default"):
    """``"default"`` (one device), ``"mirrored"`` (all GPUs of this machine) or
    ``"multi_worker"`` (machines listed in TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}; received {name!r}")


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good epoch's checkpoint is kept."""


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises :class:`TrainingDivergedError` at the first batch whose loss is not finite.

    Raising (rather than ``stop_training``) ends ``fit`` before the epoch-end
    backup, so ``BackupAndRestore`` keeps the checkpoint of the last good epoch
    and does not delete it as it would after a finished run.
    """

    def __init__(self, out_dir):
        super().__init__()
        self._out_dir = out_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            where = (f"the checkpoint of the last finished epoch ({self._epoch}) is kept in "
                     f"{os.path.join(self._out_dir, 'backup')!r}; rerun to resume from it "
                     "with a lower learning rate" if self._out_dir and self._epoch
                     else "no epoch finished, so there is no checkpoint")
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss} at epoch {self._epoch + 1}, "
                f"batch {batch + 1}; {where}")


def compile_model(model, recipe, steps_per_epoch, optimizer=None):
    """Compiles ``model`` with the recipe's optimizer (or ``optimizer``), loss and accuracy."""
    model.compile(
        optimizer=optimizer or make_optimizer(recipe, steps_per_epoch),
        loss=make_loss(recipe.label_smoothing, outputs_logits(model)),
        metrics=[keras.metrics.CategoricalAccuracy(name=ACCURACY) if recipe.label_smoothing
                 else keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
    )
    return model


def train(model, train_data, val_data, recipe=CIFAR, *, steps_per_epoch, out_dir=None,
          verbose=1, callbacks=(), strategy=None, keep_backup=False):
    """Trains with ``recipe``; resumable when ``out_dir`` is given.

    Args:
      model: a tf_keras model (e.g. from :func:`tfq_pareto.apply`), or a callable
        returning one, which is then built inside ``strategy.scope()``.
      train_data, val_data: batched datasets from :func:`tfq_pareto.data.pipeline`
        (one-hot labels when ``recipe.label_smoothing`` > 0).
      recipe: a :class:`Recipe`.
      steps_per_epoch: batches per epoch (for the schedule).
      out_dir: where to keep ``backup/`` (checkpoint of every epoch, deleted when
        training completes unless ``keep_backup``), ``history.csv`` and
        ``tensorboard/``; a rerun with the same ``out_dir`` resumes after the last
        finished epoch.
      verbose: 0 silent, 1 progress bar, 2 one line per epoch.
      callbacks: extra Keras callbacks.
      strategy: a ``tf.distribute.Strategy`` (see :func:`make_strategy`).
      keep_backup: keep the last epoch's checkpoint after training, so that a
        process killed after ``fit`` but before its caller saved the result reruns
        no epoch (the rerun restores the final weights and trains zero epochs);
        the caller then deletes it with :func:`remove_backup`.

    Returns:
      (model, history): the trained model and ``{metric: [per-epoch values]}``,
      the whole run's history when resumed (read back from ``history.csv``).

    Raises:
      TrainingDivergedError: when a batch's loss is NaN or infinite; the backup
        of the last finished epoch stays in ``out_dir/backup``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if not isinstance(model, keras.Model):
            model = model()
        compile_model(model, recipe, steps_per_epoch)
    # Extra callbacks run before the loggers so that what they add to the epoch logs
    # (e.g. MeanAbsVarianceCallback) reaches history.csv and TensorBoard.
    all_callbacks = [_EpochTimer(), _StopOnNonFiniteLoss(out_dir)] + list(callbacks)
    csv_path = None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        csv_path = os.path.join(out_dir, "history.csv")
        all_callbacks += [
            keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup"),
                                             delete_checkpoint=not keep_backup),
            keras.callbacks.CSVLogger(csv_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), write_graph=False,
                                        profile_batch=0),
        ]
    result = model.fit(train_data, validation_data=val_data, epochs=recipe.epochs,
                       verbose=verbose, callbacks=all_callbacks)
    history = read_history(csv_path) if csv_path else dict(result.history)
    return model, history


def remove_backup(out_dir):
    """Deletes the checkpoint :func:`train` kept with ``keep_backup=True`` (once the
    caller has saved what it needed from the finished run)."""
    import shutil  # pylint: disable=import-outside-toplevel

    shutil.rmtree(os.path.join(out_dir, "backup"), ignore_errors=True)


def read_history(csv_path):
    """``{column: [values]}`` of a CSVLogger file (the epoch column included)."""
    import csv  # pylint: disable=import-outside-toplevel

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    def number(text):  # CSVLogger writes "NA" for a metric an epoch lacks
        return float("nan") if text in ("NA", "") else float(text)

    return {key: [number(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def write_json(path, record):
    """Writes ``record`` as indented JSON (atomically: a temporary file, then a rename)."""
    import tempfile  # pylint: disable=import-outside-toplevel

    # A unique temporary name: several processes (distributed search workers) may
    # write the same file at once.
    handle, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                   dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
