"""Plots: accuracy vs size per precision (Fig. 1) and the DualPrecision grid (Table 7)."""

import numpy as np

from tfq_pareto.records import as_record
from tfq_pareto.search.front import pareto_front


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    return plt


def precision_label(record):
    """"1-bit" or "1/4-bit" of a record (or of a dict of one)."""
    return as_record(record).label


#: x axes of :func:`plot_pareto`: record field, scale, label.
SIZE_AXES = {
    "eq6": ("size_bits", 8192, "model size, Eq. (6) [KiB]"),
    "flash": ("flash_bytes", 1024, "flash: packed .tflite [KiB]"),
    "ram": ("ram_bytes", 1024, "RAM: TFLM arena + CMSIS-NN scratch [KiB]"),
    "macs": ("macs", 1e6, "MACs per inference [M]"),
}


def plot_pareto(records, path, title="accuracy vs model size", size_axis="eq6"):
    """One curve per precision (accuracy vs size), the Pareto front highlighted.

    Points trained with several seeds show their mean with error bars of one
    standard deviation over seeds.

    ``size_axis``: ``"eq6"`` (Eq. (6) KiB), ``"flash"``, ``"ram"`` (KiB) or ``"macs"``
    (millions); the last three need measured records (``measure`` of a sweep).
    """
    if size_axis not in SIZE_AXES:
        raise ValueError(f"size_axis must be one of {sorted(SIZE_AXES)}; received {size_axis!r}")
    field, scale, xlabel = SIZE_AXES[size_axis]
    plt = _pyplot()
    done = [r for r in map(as_record, records) if r.done]
    missing = [r.trial_id for r in done if getattr(r, field) is None]
    if missing:
        raise ValueError(f"size_axis {size_axis!r} needs {field} in every record; trials "
                         f"{missing} have none (run the sweep or search with --measure-fit)")
    points = [{"size_bits": getattr(r, field), "accuracy": r.accuracy, "record": r} for r in done]
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label in sorted({r.label for r in done}):
        curve = sorted((p for p in points if p["record"].label == label),
                       key=lambda p: p["size_bits"])
        spread = [p["record"].accuracy_std for p in curve]
        ax.errorbar([p["size_bits"] / scale for p in curve],
                    [100 * p["accuracy"] for p in curve], fmt="o-", capsize=3, label=label,
                    yerr=None if None in spread else [100 * s for s in spread])
    front = pareto_front(points) if points else []
    if front:
        ax.plot([p["size_bits"] / scale for p in front], [100 * p["accuracy"] for p in front],
                "k--", lw=1, label="Pareto front")
        ax.scatter([p["size_bits"] / scale for p in front], [100 * p["accuracy"] for p in front],
                   s=90, facecolors="none", edgecolors="k")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_grid(records, path, title="DualPrecision grid: accuracy [%]"):
    """Heat-map of accuracy over (conv_bits, dw_bits), like Table 7; failed cells left blank."""
    plt = _pyplot()
    records = [as_record(r) for r in records]
    conv = sorted({r.conv_bits for r in records})
    dw = sorted({r.dw_bits for r in records if r.dw_bits is not None}) or [None]
    grid = np.full((len(conv), len(dw)), np.nan)
    for r in records:
        if r.done:
            grid[conv.index(r.conv_bits), dw.index(r.dw_bits)] = 100 * r.accuracy
    fig, ax = plt.subplots(figsize=(4.5, 3.8), dpi=120)
    image = ax.imshow(grid, cmap="viridis")
    for i in range(len(conv)):
        for j in range(len(dw)):
            text = "failed" if np.isnan(grid[i, j]) else f"{grid[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(dw)), [str(d) for d in dw])
    ax.set_yticks(range(len(conv)), [str(c) for c in conv])
    ax.set_xlabel("depthwise bits")
    ax.set_ylabel("conv bits")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
