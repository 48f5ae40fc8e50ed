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


def plot_pareto(records, path, title="accuracy vs model size"):
    """One curve per precision (accuracy vs Eq. (6) size in KiB), the Pareto front highlighted."""
    plt = _pyplot()
    done = [r for r in map(as_record, records) if r.done]
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label in sorted({r.label for r in done}):
        curve = sorted((r for r in done if r.label == label), key=lambda r: r.size_bits)
        ax.plot([r.size_kib for r in curve], [100 * r.accuracy for r in curve], "o-",
                label=label)
    front = pareto_front(done) if done else []
    if front:
        ax.plot([r.size_kib for r in front], [100 * r.accuracy for r in front], "k--",
                lw=1, label="Pareto front")
        ax.scatter([r.size_kib for r in front], [100 * r.accuracy for r in front],
                   s=90, facecolors="none", edgecolors="k")
    ax.set_xlabel("model size, Eq. (6) [KiB]")
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
