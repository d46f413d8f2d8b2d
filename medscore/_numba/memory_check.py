"""The keyed memory's input checks (``csrc/memory_check.cpp``): a batch's rows, and a loaded
state's arrays, trees and labels. Every message is the C++ engine's."""
import math

import numba
import numpy as np

from .disjoint_set import find_root, make_disjoint_set, union_roots
from .distance import squared_distance
from .memory_cluster import cluster_from_mst, number_clusters
from .mst import edge_less


def max_safe_magnitude(dim: int) -> float:
    """Largest |entry| of a row stored without normalisation: ``1e150 / sqrt(dim)``.

    Every squared distance between such rows is at most ``dim * (2e150 / sqrt(dim))**2 =
    4e300``: finite, so no weight overflows. The bound of ``max_safe_magnitude`` in
    ``csrc/include/medscore/matrix.hpp``, with the same bits.
    """
    return 1e150 / math.sqrt(dim)


def check_magnitudes(stored, rows):
    """Refuse (ValueError) the first stored row with an entry beyond ``max_safe_magnitude``.

    ``stored`` float64 [M, D] holds batch rows ``rows`` (int64 [M]); the message is C++'s.
    """
    bound = max_safe_magnitude(stored.shape[1])
    beyond = np.abs(stored) > bound
    if not beyond.any():
        return
    i, j = np.argwhere(beyond)[0]
    raise ValueError(f"penalize_step: row {int(rows[i])} has an entry of magnitude {abs(stored[i, j]):g}; "
                     f"without normalisation stored rows must satisfy max|x| <= 1e150 / sqrt(D) = {bound:g} "
                     "(their squared distances would overflow)")


def unit_rows(stored, rows):
    """Each row of ``stored`` divided by its Euclidean norm (NumPy's bits).

    A row whose norm is 0 (all zeros, or squares that underflow) or infinite (squares that
    overflow: it would become all zeros) has no unit row: ValueError naming the first such
    batch row (``rows[i]``), with C++'s message.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(stored, axis=1, keepdims=True)
    bad = np.flatnonzero(~((norms[:, 0] > 0) & (norms[:, 0] <= np.finfo(np.float64).max)))
    if len(bad):
        i = bad[0]
        what = ("is all zeros (or its squares underflow)" if norms[i, 0] == 0
                else "has a Euclidean norm that overflows float64")
        raise ValueError(f"fingerprint row {int(rows[i])} {what} and cannot be L2-normalised")
    return stored / norms


@numba.njit(cache=True)
def _tree_fault(X, mu, mv, mw, exact_weights):
    """0 if (mu, mv, mw) is a spanning tree of X's rows sorted by (weight, u, v) whose weights
    are the Euclidean distances (``exact_weights``) or at least them; else 1 (unsorted or an
    edge written twice), 2 (a cycle) or 3 (a weight), as check_loaded_key in csrc/memory.cpp."""
    parent, size = make_disjoint_set(X.shape[0])
    for i in range(mu.shape[0]):
        if i > 0 and not edge_less(mw[i - 1], mu[i - 1], mv[i - 1], mw[i], mu[i], mv[i]):
            return 1
        ra, rb = find_root(parent, mu[i]), find_root(parent, mv[i])
        if ra == rb:
            return 2
        union_roots(parent, size, ra, rb)
        d = math.sqrt(squared_distance(X[mu[i]], X[mv[i]]))
        if (mw[i] != d) if exact_weights else (mw[i] < d):
            return 3
    return 0


_TREE_FAULTS = {1: "MST edges are not sorted by (weight, u, v) or an edge is written twice",
                2: "the MST has a cycle, so it does not connect every point",
                3: "an MST edge does not have the weight of its points"}


def check_loaded_key(memory, k, offsets, points, steps, labels, mst_u, mst_v, mst_w):
    """check_loaded_key of csrc/memory.cpp: the key's MST and labels are those of its points."""
    seg = slice(offsets[k], offsets[k + 1])
    n = int(offsets[k + 1] - offsets[k])
    if n < 2:
        return
    first = int(np.maximum(np.diff(offsets[:k + 1]) - 1, 0).sum())
    edges = slice(first, first + n - 1)
    X, mu, mv, mw = points[seg], mst_u[edges], mst_v[edges], mst_w[edges]
    fault = _tree_fault(X, mu, mv, mw, memory._params[1] == 1)
    if fault:
        raise ValueError(f"KeyedMemory::load_state: key {k}: {_TREE_FAULTS[fault]}")
    mcs, _, leaf = memory._params[:3]
    got = cluster_from_mst(X, steps[seg], mu, mv, mw, mcs, leaf, memory._allow_single, memory._epsilon)[0]
    if not np.array_equal(got, labels[seg]):
        raise ValueError(f"KeyedMemory::load_state: key {k}: the labels are not the clustering of the MST")


def check_state(offsets, points, steps, labels, mst_u, mst_v, mst_w, last_step):
    """The checks of KeyedMemory::load_state (csrc/memory_state.cpp), raising ValueError."""
    def bad(what):
        raise ValueError(f"KeyedMemory::load_state: {what}")

    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0:
        bad("offsets must start with 0")
    if (np.diff(offsets) < 0).any():
        bad("offsets must be non-decreasing")
    total = int(offsets[-1])
    if steps.shape != (total,) or labels.shape != (total,) or points.shape[0] != total:
        bad(f"offsets say {total} points but the arrays disagree")
    if not np.isfinite(points).all():
        bad("a stored point is not finite")
    if mst_u.shape != mst_v.shape or mst_u.shape != mst_w.shape:
        bad("mst_u, mst_v and mst_weight must have one length")
    n_edges = np.maximum(np.diff(offsets) - 1, 0)
    if mst_u.shape[0] != n_edges.sum():
        bad("the MST array has the wrong number of edges")
    edge_key = np.repeat(np.arange(n_edges.size), n_edges)
    sizes = np.diff(offsets)[edge_key]
    if not ((0 <= mst_u) & (mst_u < mst_v) & (mst_v < sizes) & (mst_w >= 0)).all():
        bad("bad MST edge")
    for k in range(offsets.size - 1):
        seg = slice(offsets[k], offsets[k + 1])
        s, lab = steps[seg], labels[seg]
        if s.size and ((s < 0).any() or (s > last_step).any() or (np.diff(s) < 0).any()):
            bad(f"steps of key {k} must be >= 0, non-decreasing and <= last_step")
        if ((lab < -1) | (lab >= s.size)).any():
            bad(f"label out of range in key {k}")
        if lab.size and not np.array_equal(np.unique(lab[lab >= 0]), np.arange(lab.max() + 1)):
            bad(f"labels of key {k} skip a cluster number")
        renumbered = number_clusters(lab, points[seg], s)[0] if s.size else lab
        if not np.array_equal(renumbered, lab):
            bad(f"labels of key {k} are not numbered by earliest member")
