"""The paper's diagnostics: Appendix B clipping, Proposition 5.1, Tables 1-2, and Fig. 4/5 helpers.

* :func:`clipping_constants` and :func:`plot_clipping` (Appendix B, Fig. 5);
* :func:`mean_abs_variance`: the variance of the per-filter statistic mean|w|
  over d weights (Proposition 5.1, stated correctly), and
  :class:`MeanAbsVarianceCallback`, its empirical counterpart during training (Fig. 4);
* :func:`sensitivity_table`: Delta Acc_Q, Delta Acc_G and their sum (Tables 1-2),
  with seed spreads; :func:`table2_configs`, the runs of Table 2 (VGG variant C
  at five depthwise fan-ins d).

Inference memory (Appendix F) is :func:`tfq_pareto.size.memory_footprint`.
"""

import math

import numpy as np

from tfq_pareto import clipping, graph
from tfq_pareto.backend import keras


def plot_clipping(path, num_bits=4, *, sigmas=(0.01, 0.05, 0.1), fan_in=576, filters=200, seed=0):
    """Fig. 5: per-filter best clip a* against mean|W|, with the line a = mean|W| / c_b.

    Writes a PNG to ``path`` and returns ``(mean_abs, best_clip)`` arrays.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(seed)
    means, clips = [], []
    for sigma in sigmas:
        m, a = clipping.best_clips_per_filter(rng.normal(0, sigma, (filters, fan_in)), num_bits)
        means.append(m)
        clips.append(a)
    means, clips = np.concatenate(means), np.concatenate(clips)
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=120)
    ax.scatter(means, clips, s=6, alpha=0.5, label="best clip per filter")
    line = np.linspace(0, means.max() * 1.05, 10)
    c_b = clipping.CLIPPING_CONSTANTS[num_bits]
    ax.plot(line, line / c_b, "r-", label=f"a = mean|W| / {c_b}")
    ax.set_xlabel("mean|W_i|")
    ax.set_ylabel("best clip a*")
    ax.set_title(f"{num_bits}-bit, d = {fan_in}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return means, clips


def cross_moment(rho):
    """E[|w_i| |w_j|] / sigma^2 for jointly Gaussian zero-mean w_i, w_j with correlation ``rho``.

    = (2 / pi) * (sqrt(1 - rho^2) + rho * arcsin(rho)); 2/pi for independent weights.
    """
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho must be a correlation coefficient in [-1, 1]; received {rho!r}")
    return 2.0 / math.pi * (math.sqrt(1.0 - rho * rho) + rho * math.asin(rho))


def mean_abs_variance(d, sigma, rho=0.0):
    """Proposition 5.1, stated correctly: Var(mean|w|) over a filter of ``d`` weights.

    For w_1..w_d ~ N(0, sigma^2) with pairwise correlation coefficient ``rho``:

        Var = sigma^2 (1 - 2/pi) / d + (d - 1)/d * sigma^2 * (cross_moment(rho) - 2/pi)

    Relation to the printed formula ``sigma^2/d + (d-1) rho' sigma^2/d - 2 sigma^2/pi``:
    expanding E[m^2] - E[m]^2 gives exactly the printed expression when rho' is the
    normalised cross moment E[|w_i||w_j|]/sigma^2 = cross_moment(rho), not the
    correlation coefficient. Read with rho' = rho, the printed formula is negative
    for independent weights (rho = 0, d > 2); here rho is the correlation
    coefficient, and rho = 0 gives sigma^2 (1 - 2/pi) / d. Either way the variance
    falls as 1/d: a 3x3 depthwise filter (d = 9) has a much noisier scale
    estimate than a 3x3 conv over 64 channels (d = 576).

    Args:
      d: filter size C_in * K_w * K_h (>= 1).
      sigma: standard deviation of the weights (>= 0).
      rho: correlation coefficient between weights of a filter, in [-1, 1].
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an int >= 1; received {d!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; received {sigma!r}")
    s2 = float(sigma) ** 2
    return s2 * (1 - 2 / math.pi) / d + (d - 1) / d * s2 * (cross_moment(rho) - 2 / math.pi)


def printed_mean_abs_variance(d, sigma, normalised_cross_moment):
    """Proposition 5.1 exactly as printed, with rho' the normalised cross moment E|w_i||w_j|/sigma^2."""
    s2 = float(sigma) ** 2
    return s2 / d + (d - 1) * normalised_cross_moment * s2 / d - 2 * s2 / math.pi


def _kernel_variable(layer):
    inner = graph.unwrap(layer)
    for weight in layer.trainable_weights:
        name = weight.name.split("/")[-1]
        if name.startswith("depthwise_kernel") or name.startswith("kernel"):
            return weight, graph.is_depthwise(inner)
    return None, False


class MeanAbsVarianceCallback(keras.callbacks.Callback):
    """Fig. 4: per layer, the average over filters of the variance of mean|W_i| across steps.

    Every ``every_n_steps`` training steps it reads each tracked layer's kernel
    and records the per-filter mean|W_i|; at the end of each epoch it writes
    ``mean_abs_var/<layer>`` = mean over filters of the sample variance of those
    values into the epoch logs, so that ``History`` and a ``CSVLogger`` placed
    after it hold one value per layer per epoch.

    Args:
      layer_types: which layers to track: "depthwise" (default), "conv" (standard
        convs and dense) or "all".
      every_n_steps: sampling period in steps (>= 1).
    """

    LAYER_TYPES = ("depthwise", "conv", "all")

    def __init__(self, layer_types="depthwise", every_n_steps=1):
        super().__init__()
        if layer_types not in self.LAYER_TYPES:
            raise ValueError(f"layer_types must be one of {self.LAYER_TYPES}; received {layer_types!r}")
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an int >= 1; received {every_n_steps!r}")
        self.layer_types = layer_types
        self.every_n_steps = every_n_steps
        self._tracked = None
        self._sums = {}
        self._steps = 0

    def _track(self):
        tracked = {}
        for layer in self.model.layers:
            kernel, depthwise = _kernel_variable(layer)
            if kernel is None or not graph.is_weighted(layer):
                continue
            if self.layer_types == "all" or (self.layer_types == "depthwise") == depthwise:
                tracked[graph.unwrap(layer).name] = (kernel, depthwise)
        return tracked

    def on_epoch_begin(self, epoch, logs=None):
        if self._tracked is None:
            self._tracked = self._track()
        self._sums = {name: [0.0, 0.0, 0] for name in self._tracked}
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._steps % self.every_n_steps:
            return
        for name, (kernel, depthwise) in self._tracked.items():
            w = kernel.numpy()
            axes = (0, 1) if depthwise else tuple(range(w.ndim - 1))
            m = np.mean(np.abs(w), axis=axes).ravel()
            acc = self._sums[name]
            acc[0] = acc[0] + m
            acc[1] = acc[1] + m * m
            acc[2] += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, (total, squares, count) in self._sums.items():
            if count < 2:
                value = float("nan")
            else:
                variance = (squares - total * total / count) / (count - 1)
                value = float(np.mean(np.maximum(variance, 0.0)))
            logs[f"mean_abs_var/{name}"] = value


def sensitivity_table(results):
    """Tables 1-2: accuracy lost by lowering precision and regained by growing width.

    Args:
      results: iterable of dicts with ``group`` (e.g. a layer type, a value of d,
        or a model variant), ``setting`` ("high": the high-precision model;
        "low": the low-precision model of the same width; "low_grown": the
        low-precision model grown 2x, about the high-precision model's size),
        ``accuracy`` and optionally ``seed``. Repeated entries are averaged.

    Returns:
      One row per group, in first-seen group order: ``{"group", "acc_high",
      "acc_low", "acc_low_grown", "delta_acc_q": acc_low - acc_high,
      "delta_acc_g": acc_low_grown - acc_low, "total": their sum (Table 2's
      Delta Acc)}``, means over seeds. With two or more seeds that have all three
      settings, each delta is also computed per seed and the row gains
      ``"<key>_std"`` (sample standard deviation over seeds, ddof=1) for the
      three deltas and ``acc_high``, as Table 2's "mean +- std" over three runs,
      and ``"seeds"``.
    """
    settings = ("high", "low", "low_grown")
    values, by_seed = {}, {}
    for r in results:
        if r["setting"] not in settings:
            raise ValueError(f"setting must be one of {settings}; received {r['setting']!r}")
        values.setdefault(r["group"], {s: [] for s in settings})[r["setting"]].append(r["accuracy"])
        if r.get("seed") is not None:
            by_seed.setdefault(r["group"], {}).setdefault(r["seed"], {})[r["setting"]] = r["accuracy"]
    rows = []
    for group, by_setting in values.items():
        missing = [s for s in settings if not by_setting[s]]
        if missing:
            raise ValueError(f"group {group!r} lacks results for {missing}")
        high, low, grown = (float(np.mean(by_setting[s])) for s in settings)
        row = {"group": group, "acc_high": high, "acc_low": low, "acc_low_grown": grown,
               "delta_acc_q": low - high, "delta_acc_g": grown - low, "total": grown - high}
        complete = [v for v in by_seed.get(group, {}).values() if len(v) == 3]
        if len(complete) >= 2:
            per_seed = {
                "acc_high": [v["high"] for v in complete],
                "delta_acc_q": [v["low"] - v["high"] for v in complete],
                "delta_acc_g": [v["low_grown"] - v["low"] for v in complete],
                "total": [v["low_grown"] - v["high"] for v in complete],
            }
            row.update({f"{k}_std": float(np.std(v, ddof=1)) for k, v in per_seed.items()})
            row["seeds"] = len(complete)
        rows.append(row)
    return rows


def table2_configs(*, width_multiplier=0.5, high_bits=4, low_bits=1, grow=2.0,
                   fan_ins=None, dataset="cifar100", act_bits=None):
    """The runs of Table 2: VGG-11 variant C at each depthwise fan-in d, three settings each.

    For every d = C x K x K of ``fan_ins`` (default Table 2's five,
    :data:`tfq_pareto.models.vgg.TABLE2_FAN_INS`): the ``high_bits`` model and the
    ``low_bits`` model at ``width_multiplier`` (0.5x in the paper), and the
    ``low_bits`` model grown ``grow`` x (``Acc_{1bit,2x}``). Every conv, depthwise
    included, is at the setting's bits (the first and last layer at 8). Train each
    with :func:`tfq_pareto.experiment.run` and give ``{"group", "setting",
    "accuracy", "seed"}`` dicts to :func:`sensitivity_table`.

    Returns:
      A list of ``{"group": "CxKxK", "setting": "high" | "low" | "low_grown",
      "config": RunConfig}``.
    """
    from tfq_pareto.experiment import RunConfig  # pylint: disable=import-outside-toplevel
    from tfq_pareto.models.vgg import TABLE2_FAN_INS  # pylint: disable=import-outside-toplevel

    runs = []
    for channels, kernel in fan_ins or TABLE2_FAN_INS:
        group = f"{channels}x{kernel}x{kernel}"
        for setting, bits, width in (("high", high_bits, width_multiplier),
                                     ("low", low_bits, width_multiplier),
                                     ("low_grown", low_bits, width_multiplier * grow)):
            config = RunConfig(model="vgg11", variant="C", width_multiplier=width, conv_bits=bits,
                               dw_bits=bits, act_bits=act_bits, dataset=dataset,
                               dw_fan_in=group)
            runs.append({"group": group, "setting": setting, "config": config})
    return runs


def format_sensitivity_table(rows):
    """Renders :func:`sensitivity_table` rows (accuracies in points; "+- std" with seeds)."""
    def cell(row, key, sign="+"):
        text = f"{100 * row[key]:{sign}.2f}"
        if f"{key}_std" in row:
            text += f" +- {100 * row[key + '_std']:.2f}"
        return f"{text:>16}"

    header = f"{'group':<14}{'dAcc_Q':>16}{'dAcc_G':>16}{'dAcc':>16}{'Acc_high':>16}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{str(r['group']):<14}{cell(r, 'delta_acc_q')}{cell(r, 'delta_acc_g')}"
                     f"{cell(r, 'total')}{cell(r, 'acc_high', '')}")
    return "\n".join(lines)
