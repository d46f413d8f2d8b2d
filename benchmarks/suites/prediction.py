"""Suite ``prediction``: ``approximate_predict`` of medscore against hdbscan's, side by side.

Case ``prediction``: both libraries fit the same seeded blobs (``benchmarks.datasets.blobs``,
10 centres, std 1.0) with ``min_cluster_size=5`` and ``prediction_data=True`` (hdbscan with
``approx_min_span_tree=False``, so both clusterings are exact); then the time of one
``approximate_predict`` call on M new points (blobs of the same centres, another seed) is
taken, best of 3 after one untimed call (which also builds medscore's search tree and
compiles its kernels). The fits are not timed. ``same_predictions`` says whether the new
points' labels are the same partition in both (noise included); ``speedup_vs_hdbscan`` is
hdbscan's seconds over medscore's.
"""
from __future__ import annotations

import numpy as np

from ..datasets import blobs

NAME = "prediction"
DESCRIPTION = ("approximate_predict of M new points into an exact fit (min_cluster_size=5, "
               "prediction_data=True): medscore vs hdbscan (approx_min_span_tree=False).")


def cases(quick: bool) -> list[tuple[int, int, int]]:
    """(N fitted, D, M predicted)."""
    if quick:
        return [(1000, 8, 200)]
    return [(5000, 8, 1000), (20000, 16, 5000), (20000, 64, 5000)]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a < 0, b < 0):
        return False
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist()))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def run(bench, quick: bool) -> None:
    import medscore

    try:
        import hdbscan
    except ImportError as exc:  # pragma: no cover - depends on the environment
        hdbscan, missing = None, f"not installed: {exc}"
    bench.describe(NAME, DESCRIPTION)
    if not bench.wants_case("prediction"):
        return
    for n, d, m in bench.progress(cases(quick), desc="prediction"):
        points = blobs(n, d)
        new = blobs(m, d, seed=1)
        params = {"n": n, "d": d, "m": m}
        ours = medscore.HDBSCAN(min_cluster_size=5, prediction_data=True).fit(points)
        results = {}
        if bench.wants_library("medscore"):
            timing = bench.time(lambda: medscore.approximate_predict(ours, new), repeat=3, warmup=1)
            results["medscore"] = timing
            labels_ours = medscore.approximate_predict(ours, new)[0]
        if hdbscan is None:
            bench.record(NAME, "prediction", "hdbscan", None, status=missing, params=params)
            continue
        if bench.wants_library("hdbscan"):
            theirs = hdbscan.HDBSCAN(min_cluster_size=5, approx_min_span_tree=False,
                                     prediction_data=True).fit(points)
            timing = bench.time(lambda: hdbscan.approximate_predict(theirs, new), repeat=3, warmup=1)
            results["hdbscan"] = timing
            labels_theirs = hdbscan.approximate_predict(theirs, new)[0]
        same = (_same_partition(labels_ours, labels_theirs)
                if {"medscore", "hdbscan"} <= results.keys() else None)
        for library, timing in results.items():
            extra = {"median_seconds": timing.median, "same_predictions": same}
            if library == "medscore" and "hdbscan" in results:
                extra["speedup_vs_hdbscan"] = results["hdbscan"].best / timing.best
            bench.record(NAME, "prediction", library, timing.best, params=params,
                         peak_bytes=timing.peak_bytes, **extra)
