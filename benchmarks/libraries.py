"""The HDBSCAN implementations the suites compare, behind one small interface.

Each ``Library`` builds a fresh estimator per call (``fit_labels(X)`` returns the int
labels, -1 for noise), says whether it imports here (``unavailable``: None or the reason)
and whether it applies to an input size (``limit(n, d)``: None or the reason to skip).
Every import is done here, lazily, so a missing library becomes a recorded
"not installed" row instead of a crash.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: sklearn's HDBSCAN ("auto": a k-d tree for the core distances, then a dense single-threaded
#: O(N^2) Prim) is only run up to this N, to keep the full suite's duration bounded.
SKLEARN_MAX_N = 20_000
#: fast_hdbscan switches to an approximate nearest-neighbour graph (pynndescent) above this.
FAST_HDBSCAN_MAX_D = 30


@dataclass
class Library:
    """One implementation under test.

    Attributes
    ----------
    name : str
        Row label in the results, e.g. ``"hdbscan exact"``.
    config : str
        The constructor arguments used, for the report.
    make : callable () -> estimator with ``fit(X)`` and ``labels_``
    unavailable : str or None
        Why the library cannot run here (import failure), or None.
    limit : callable (n, d) -> str or None
        Why this input is skipped for this library, or None to run it.
    """

    name: str
    config: str
    make: Callable[[], object]
    unavailable: str | None = None
    limit: Callable[[int, int], str | None] = lambda n, d: None

    def fit_labels(self, points: np.ndarray) -> np.ndarray:
        """Fit a fresh estimator on ``points`` (float64 [N, D]); return int64 labels [N]."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # competitors' deprecations
            estimator = self.make()
            estimator.fit(points)
        return np.asarray(estimator.labels_, dtype=np.int64)


def _import_error(module: str) -> str | None:
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # a half-built extension can fail in other ways than ImportError
        return f"{type(exc).__name__}: {exc}"
    return None


def _medscore(backend: str, mcs: int) -> Library:
    reason = _import_error("medscore")
    if reason is None:
        from medscore._backends import get_backend

        try:
            if not hasattr(get_backend(backend), "fit"):  # e.g. a bare namespace package
                reason = f"backend {backend!r} has no fit() yet"
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"

    def make():
        import medscore

        return medscore.HDBSCAN(min_cluster_size=mcs, backend=backend, n_threads=0)

    return Library(f"medscore {backend}",
                   f"medscore.HDBSCAN(min_cluster_size={mcs}, backend={backend!r}, n_threads=0)",
                   make, reason)


def _hdbscan(exact: bool, mcs: int, threads: int) -> Library:
    approx = "approx_min_span_tree=False, " if exact else ""

    def make():
        import hdbscan

        return hdbscan.HDBSCAN(min_cluster_size=mcs, approx_min_span_tree=not exact,
                               core_dist_n_jobs=threads)

    return Library("hdbscan exact" if exact else "hdbscan default",
                   f"hdbscan.HDBSCAN(min_cluster_size={mcs}, {approx}core_dist_n_jobs={threads})",
                   make, _import_error("hdbscan"))


def _sklearn(mcs: int) -> Library:
    def make():
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=mcs, n_jobs=-1, copy=True)

    def limit(n, d):
        return f"skipped: N > {SKLEARN_MAX_N}" if n > SKLEARN_MAX_N else None

    return Library("sklearn", f"sklearn.cluster.HDBSCAN(min_cluster_size={mcs}, n_jobs=-1)",
                   make, _import_error("sklearn.cluster"), limit)


def _fast_hdbscan(mcs: int) -> Library:
    def make():
        import fast_hdbscan

        return fast_hdbscan.HDBSCAN(min_cluster_size=mcs)

    def limit(n, d):
        if d > FAST_HDBSCAN_MAX_D:
            return f"skipped: D > {FAST_HDBSCAN_MAX_D} (approximate there)"
        return None

    return Library("fast_hdbscan", f"fast_hdbscan.HDBSCAN(min_cluster_size={mcs})",
                   make, _import_error("fast_hdbscan"), limit)


def hdbscan_libraries(min_cluster_size: int = 5) -> list[Library]:
    """The batch HDBSCAN implementations, reference first, then the baselines.

    Threads: medscore uses every core (``n_threads=0``), ``hdbscan`` gets
    ``core_dist_n_jobs`` = usable cores, sklearn ``n_jobs=-1``, fast_hdbscan uses Numba's
    default thread count (every core).
    """
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1
    mcs = min_cluster_size
    return [_medscore("cpp", mcs), _medscore("numba", mcs), _hdbscan(True, mcs, threads),
            _hdbscan(False, mcs, threads), _sklearn(mcs), _fast_hdbscan(mcs)]
