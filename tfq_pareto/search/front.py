"""Pareto front and Pareto dominance between precisions (Definition 4.1)."""

import numpy as np

#: Metric names of a point.
SIZE = "size_bits"
ACCURACY = "accuracy"


def _get(point, name):
    """A metric of a point: a :class:`~tfq_pareto.records.TrialRecord` or a dict."""
    if isinstance(point, dict):
        return point.get(name)
    return getattr(point, name, None)


def pareto_front(points):
    """The non-dominated points, smallest size first.

    A point is dominated when another is no larger and at least as accurate, and
    strictly better in one of the two.

    Args:
      points: :class:`~tfq_pareto.records.TrialRecord` s (or dicts, e.g. read
        from results.json) with ``size_bits`` and ``accuracy``.

    Returns:
      The list of non-dominated records, sorted by size (ties: higher accuracy first).
    """
    points = list(points)
    for p in points:
        if _get(p, SIZE) is None or _get(p, ACCURACY) is None:
            raise ValueError(f"every point needs {SIZE!r} and {ACCURACY!r}; received {p!r}")
    ordered = sorted(points, key=lambda p: (_get(p, SIZE), -_get(p, ACCURACY)))
    front, best = [], -np.inf
    for p in ordered:
        if _get(p, ACCURACY) > best:
            front.append(p)
            best = _get(p, ACCURACY)
    return front


def _curve(curve, name):
    pairs = sorted((float(s), float(a)) for s, a in curve)
    if len(pairs) < 1:
        raise ValueError(f"curve {name} is empty")
    sizes = np.array([s for s, _ in pairs])
    if np.any(np.diff(sizes) == 0):
        raise ValueError(f"curve {name} has two points at the same size: {pairs}")
    return sizes, np.array([a for _, a in pairs])


def dominates(a, b):
    """Definition 4.1: curve ``a`` Pareto-dominates curve ``b``.

    ``a`` dominates ``b`` when ``a``'s accuracy is higher than ``b``'s at every
    model size in the range both curves cover. Curves are compared at equal sizes
    by linear interpolation of each curve's points, at every size of either curve
    inside the common range.

    Args:
      a, b: lists of ``(size_bits, accuracy)`` pairs.

    Returns:
      True or False.

    Raises:
      ValueError: empty curves, or size ranges that do not overlap (no common size
        to compare at).
    """
    sizes_a, acc_a = _curve(a, "a")
    sizes_b, acc_b = _curve(b, "b")
    grid = _common_sizes(sizes_a, sizes_b)
    return bool(np.all(np.interp(grid, sizes_a, acc_a) > np.interp(grid, sizes_b, acc_b)))


def _common_sizes(sizes_a, sizes_b):
    """Every size of either curve inside the range both cover (where they are compared)."""
    low = max(sizes_a[0], sizes_b[0])
    high = min(sizes_a[-1], sizes_b[-1])
    if low > high:
        raise ValueError(
            f"the curves do not overlap in size: a covers {sizes_a[0]:,.0f}..{sizes_a[-1]:,.0f} "
            f"bits, b covers {sizes_b[0]:,.0f}..{sizes_b[-1]:,.0f} bits; Definition 4.1 compares "
            "accuracies at equal sizes, so add points that make the ranges overlap"
        )
    grid = np.unique(np.concatenate([sizes_a, sizes_b]))
    return grid[(grid >= low) & (grid <= high)]


def pooled_std(*stds):
    """Pooled standard deviation ``sqrt(mean(std_i^2))`` of points with equal seed counts.

    The spread a comparison of two means must exceed (``pooled_std(std_a, std_b)``);
    None when any spread is unknown (a point trained with one seed). Floats give a
    float, NumPy arrays an array.
    """
    if not stds:
        raise ValueError("pooled_std needs at least one standard deviation")
    if any(s is None for s in stds):
        return None
    pooled = np.sqrt(sum(np.square(s) for s in stds) / len(stds))
    return float(pooled) if np.ndim(pooled) == 0 else pooled


def dominates_beyond_spread(a, b):
    """Definition 4.1 on mean accuracies, with every margin larger than the seed spread.

    ``a`` and ``b`` are curves of ``(size_bits, mean_accuracy, std)`` triples, the
    standard deviation over seeds of each point. At every size where
    :func:`dominates` compares them (each curve linearly interpolated, the
    standard deviations too), ``a``'s mean must exceed ``b``'s by more than the
    pooled standard deviation ``sqrt((std_a^2 + std_b^2) / 2)``.

    Returns:
      True or False; None when a point has no spread (trained with one seed), so
      that a margin cannot be told from noise.

    Raises:
      ValueError: as :func:`dominates` (empty curves, no common size).
    """
    if any(len(p) != 3 for p in list(a) + list(b)):
        raise ValueError("curves must be (size_bits, mean_accuracy, std) triples")
    if any(p[2] is None for p in list(a) + list(b)):
        return None
    order_a, order_b = sorted(a), sorted(b)
    sizes_a, mean_a = _curve([(p[0], p[1]) for p in order_a], "a")
    sizes_b, mean_b = _curve([(p[0], p[1]) for p in order_b], "b")
    std_a = np.array([float(p[2]) for p in order_a])
    std_b = np.array([float(p[2]) for p in order_b])
    grid = _common_sizes(sizes_a, sizes_b)
    margin = np.interp(grid, sizes_a, mean_a) - np.interp(grid, sizes_b, mean_b)
    pooled = pooled_std(np.interp(grid, sizes_a, std_a), np.interp(grid, sizes_b, std_b))
    return bool(np.all(margin > pooled))


def dominance_beyond_spread_matrix(curves):
    """Pairwise :func:`dominates_beyond_spread` between labelled curves.

    Args:
      curves: ``{label: [(size_bits, mean_accuracy, std), ...]}``.

    Returns:
      ``{row: {column: True | False | None}}``; None: no overlap, the diagonal,
      or a point with no spread (one seed).
    """
    return _pairwise(curves, dominates_beyond_spread)


def dominance_matrix(curves):
    """Pairwise Definition 4.1 between labelled curves.

    Args:
      curves: ``{label: [(size_bits, accuracy), ...]}``.

    Returns:
      ``{row: {column: True | False | None}}``: True when ``row`` dominates
      ``column``; None when their size ranges do not overlap (or on the diagonal).
    """
    return _pairwise(curves, dominates)


def _pairwise(curves, compare):
    """``{row: {column: compare(row's curve, column's)}}``; None on the diagonal and
    where ``compare`` raises ValueError (no overlap)."""
    matrix = {}
    for row, curve_a in curves.items():
        matrix[row] = {}
        for column, curve_b in curves.items():
            if row == column:
                matrix[row][column] = None
                continue
            try:
                matrix[row][column] = compare(curve_a, curve_b)
            except ValueError:
                matrix[row][column] = None
    return matrix


#: Up to this many keys, rank_agreement's p-value is exact (every one of the n! pairings).
EXACT_RANK_KEYS = 9


def rank_agreement(scores_a, scores_b):
    """How well one ranking of configurations predicts another: Spearman's rho.

    E.g. a cheap proxy's accuracy per (conv_bits, dw_bits) pair against the full
    grid's mean accuracy per pair (issue 16: a proxy that cannot rank is noise).
    Spearman's rank correlation (``scipy.stats.spearmanr``; ties get their
    average rank) over the keys both mappings score. Its two-sided p-value (the
    chance of a correlation at least this strong in either direction if the two
    rankings were unrelated) is exact for up to :data:`EXACT_RANK_KEYS` keys
    (``scipy.stats.permutation_test`` over every pairing: with 4 keys even a
    perfect agreement has p = 2/24), and the t approximation of ``spearmanr``
    above that.

    Args:
      scores_a, scores_b: ``{key: score}``; keys any hashable (e.g. ``(1, 4)``),
        None scores are left out.

    Returns:
      ``{"spearman": rho, "p_value": p, "p_value_method": "exact" | "t approximation",
      "n": number of common keys, "keys": [...]}``; ``spearman`` and ``p_value`` are
      None with fewer than 3 common keys or a constant score (no ranking to compare).
    """
    from scipy import stats  # pylint: disable=import-outside-toplevel

    keys = sorted((k for k in scores_a if k in scores_b
                   and scores_a[k] is not None and scores_b[k] is not None), key=repr)
    a = np.array([float(scores_a[k]) for k in keys])
    b = np.array([float(scores_b[k]) for k in keys])
    result = {"spearman": None, "p_value": None, "p_value_method": None, "n": len(keys),
              "keys": keys}
    if len(keys) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return result
    rho, p_value = stats.spearmanr(a, b)
    method = "t approximation"
    if len(keys) <= EXACT_RANK_KEYS:
        ranks_b = stats.rankdata(b)
        centred_b = ranks_b - ranks_b.mean()

        def pearson_of_ranks(ranks_a, axis):
            centred = ranks_a - ranks_a.mean(axis=axis, keepdims=True)
            return (centred * centred_b).sum(axis=axis) / np.sqrt(
                (centred ** 2).sum(axis=axis) * (centred_b ** 2).sum())

        p_value = stats.permutation_test(
            (stats.rankdata(a),), pearson_of_ranks, permutation_type="pairings",
            n_resamples=np.inf, vectorized=True, alternative="two-sided").pvalue
        method = "exact"
    result.update(spearman=float(rho), p_value=float(p_value), p_value_method=method)
    return result
