"""Exact neighbour-list maintenance for ``IncrementalHDBSCAN``: a pure exact path and FAISS.

FAISS (``IndexFlatL2``, float32) only proposes candidates. Every candidate is re-ranked with
the SPEC's bit-defined float64 distance, and each answer is certified: a point FAISS did not
return could only beat the answer if its float32 squared distance were off by more than a
proven error bound. Rows that cannot be certified are recomputed by exact brute force.
"""
from __future__ import annotations

import os

import numpy as np

from . import incremental as kernels

#: Extra candidates asked from FAISS beyond k, so that ties and rounding rarely force the
#: exact fallback.
FAISS_MARGIN = 16


def float_slack_factor(dim: int) -> float:
    """Bound on |float32 squared distance - exact| relative to ``|x|^2 + |y|^2``.

    Rounding the inputs to float32 costs at most 2^-21 after squaring, a D-term float32 dot
    product about D * 2^-23; the sum is doubled for safety.
    """
    return 2.0 * (4.0 * (dim + 4) * 2.0**-24 + 2.0**-21)


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("knn='faiss' needs FAISS: pip install 'medscore[faiss]' "
                          "(or use knn='exact')") from exc
    _make_fork_safe(faiss)
    return faiss


_FORK_HOOK = []


def _make_fork_safe(faiss) -> None:
    """Once per process: a child forked after FAISS searched gets a one-thread FAISS.

    FAISS searches on GNU OpenMP, whose thread pool does not survive fork: a forked child's
    first search waits forever for the parent's threads. With one thread OpenMP starts no
    team, so the child's searches run (data-loader workers and multiprocessing fork from
    the trainer). The parent keeps its threads.
    """
    if _FORK_HOOK or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(after_in_child=lambda: faiss.omp_set_num_threads(1))
    _FORK_HOOK.append(True)


class ExactSearch:
    """Brute-force exact neighbour search over the rows of one matrix (no state)."""

    name = "exact"

    def knn_of_rows(self, X: np.ndarray, rows: np.ndarray, k: int):
        """k nearest other rows of ``X[rows]`` (int64 [M, k], float64 [M, k]), exact."""
        return kernels.knn_of_rows(X, rows, k, 0, X.shape[0])

    def closer_new_points(self, X: np.ndarray, n_old: int, core_old: np.ndarray, k: int):
        """For each old row u, its k nearest new rows (>= n_old) strictly closer than core_old[u]."""
        rows = np.arange(n_old, dtype=np.int64)
        return kernels.closer_rows_in_range(X, rows, core_old, k, n_old, X.shape[0])


class FaissSearch(ExactSearch):
    """FAISS float32 candidates, exact float64 re-ranking and certification.

    ``shift`` (float64 [D]) is subtracted before conversion to float32: FAISS's squared
    distances ``|x|^2 + |y|^2 - 2 x.y`` lose precision in proportion to the norms.
    """

    name = "faiss"

    def __init__(self, shift: np.ndarray):
        self.shift = np.asarray(shift, dtype=np.float64)

    def _index_of(self, X: np.ndarray):
        faiss = _faiss()
        centred = X - self.shift
        index = faiss.IndexFlatL2(X.shape[1])
        index.add(np.ascontiguousarray(centred, dtype=np.float32))
        return index, np.einsum("ij,ij->i", centred, centred)

    def _search(self, index, Q: np.ndarray, k: int):
        centred = np.ascontiguousarray(Q - self.shift, dtype=np.float32)
        dist2, idx = index.search(centred, k)
        return dist2.astype(np.float64), idx.astype(np.int64)

    def _uncertain(self, q_norm2, db_norm2_max, last_f, threshold, covered, dim):
        """Rows where an unseen point might lie within ``threshold`` (exact distance)."""
        slack = float_slack_factor(dim) * (q_norm2 + db_norm2_max)
        safe = covered | (last_f - slack > threshold * threshold * (1.0 + 1e-12))
        return ~safe

    def knn_of_rows(self, X, rows, k):
        n, dim = X.shape
        index, norm2 = self._index_of(X)
        want = min(k + FAISS_MARGIN + 1, n)
        f, cand = self._search(index, X[rows], want)
        idx, dist = kernels.rank_candidates(X, rows, cand, k)
        bad = self._uncertain(norm2[rows], norm2.max(), f[:, -1], dist[:, -1], want == n, dim)
        bad |= idx[:, -1] < 0
        if bad.any():
            fix = np.flatnonzero(bad)
            idx[fix], dist[fix] = kernels.knn_of_rows(X, rows[fix], k, 0, n)
        return idx, dist

    def closer_new_points(self, X, n_old, core_old, k):
        n, dim = X.shape
        n_new = n - n_old
        index, norm2 = self._index_of(X[n_old:])
        want = min(k, n_new)
        f, cand = self._search(index, X[:n_old], want)
        cand = np.where(cand >= 0, cand + n_old, -1)
        rows = np.arange(n_old, dtype=np.int64)
        idx, dist = kernels.rank_candidates(X, rows, cand, k)
        too_far = dist >= core_old[:, None]
        idx[too_far], dist[too_far] = -1, np.inf
        old_norm2 = np.einsum("ij,ij->i", X[:n_old] - self.shift, X[:n_old] - self.shift)
        bad = self._uncertain(old_norm2, norm2.max(), f[:, -1], core_old, want == n_new, dim)
        if bad.any():
            fix = np.flatnonzero(bad)
            idx[fix], dist[fix] = kernels.closer_rows_in_range(X, rows[fix], core_old[fix], k, n_old, n)
        return idx, dist


def make_search(knn: str, shift: np.ndarray):
    """The neighbour search named by ``knn`` ("faiss" or "exact")."""
    if knn == "exact":
        return ExactSearch()
    _faiss()
    return FaissSearch(shift)
