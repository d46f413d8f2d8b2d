"""The stable-label rule of ``IncrementalHDBSCAN`` (the C++ engine's ``match_labels`` mirrors it)."""
from __future__ import annotations

import numpy as np


def match_labels(old_labels, new_raw, n_raw, next_label):
    """Stable labels for a new raw partition, given the old stable labels of the same points.

    Rule: count, over points live before and after the update, how many points each pair
    (old stable label L, new raw cluster j) shares. Pairs are taken greedily by decreasing
    count, ties by smaller L then smaller j; a pair is taken when neither L nor j is taken yet
    and the count is positive, and j then keeps the label L. Raw clusters left over get fresh
    labels ``next_label, next_label + 1, ...`` in increasing j. Labels are never reused.

    Parameters
    ----------
    old_labels : int64 [M], stable labels before the update (-1 noise)
    new_raw : int64 [M], raw labels after the update for the same points
    n_raw : int, number of raw clusters after the update
    next_label : int

    Returns
    -------
    (int64 ndarray mapping raw label j -> stable label, new next_label)
    """
    pairs, counts = _pair_counts(old_labels, new_raw, n_raw)
    order = np.lexsort((pairs[1], pairs[0], -counts))
    mapping = np.full(n_raw, -1, np.int64)
    used_old = set()
    for t in order.tolist():
        old, raw = int(pairs[0, t]), int(pairs[1, t])
        if old not in used_old and mapping[raw] < 0:
            mapping[raw] = old
            used_old.add(old)
    for raw in np.flatnonzero(mapping < 0).tolist():
        mapping[raw] = next_label
        next_label += 1
    return mapping, next_label


def _pair_counts(old_labels, new_raw, n_raw):
    """The pairs (L, j) with L >= 0 and j >= 0 that some points share, and their counts.

    Returns (int64 [2, P], int64 [P]), pairs in increasing (L, j). A pair is the key
    ``L * n_raw + j``; counted with ``bincount`` when the key range is small (one O(M) pass,
    no sort: this runs on every update over all live points), else by sorting the keys.
    """
    both = (old_labels >= 0) & (new_raw >= 0)
    if not both.any():
        return np.empty((2, 0), np.int64), np.empty(0, np.int64)
    old = old_labels[both].astype(np.int64)
    keys = old * n_raw + new_raw[both]
    n_keys = (int(old.max()) + 1) * n_raw
    if n_keys <= 4 * keys.size + 1024:
        counts = np.bincount(keys, minlength=n_keys)
        unique = np.flatnonzero(counts)
        counts = counts[unique]
    else:
        unique, counts = np.unique(keys, return_counts=True)
    return np.stack([unique // n_raw, unique % n_raw]), counts
