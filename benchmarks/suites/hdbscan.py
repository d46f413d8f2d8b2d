"""Suite ``hdbscan``: batch fit time of medscore's backends against the other libraries.

Every library clusters the same seeded blobs (``benchmarks.datasets.blobs``: 10 centres,
std 1.0) with ``min_cluster_size=5``. For each fit the suite records the best wall time,
the speed-up against ``hdbscan`` exact and ``hdbscan`` default (baseline seconds divided by
the library's seconds: above 1 means faster than the baseline), and whether the labels are
the reference's up to renaming of the clusters (same noise set and a one-to-one map of the
clusters). The reference is ``medscore cpp``, or ``hdbscan exact`` while the C++ backend
does not import.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..datasets import blobs
from ..libraries import Library, hdbscan_libraries

NAME = "hdbscan"
DESCRIPTION = ("Batch HDBSCAN fit: medscore cpp/numba vs hdbscan (exact and default), "
               "sklearn (N <= 20k) and fast_hdbscan (D <= 30) on seeded blobs, "
               "min_cluster_size=5.")

REFERENCES = ("medscore cpp", "hdbscan exact")
BASELINES = {"speedup_vs_hdbscan_exact": "hdbscan exact",
             "speedup_vs_hdbscan_default": "hdbscan default"}
#: Points of the untimed first call, which takes Numba compilation (or cache loading) out.
FIRST_CALL_N = 300
#: Timing stops repeating once this many seconds were spent on one library and input.
REPEAT_BUDGET_S = 20.0


class Case(NamedTuple):
    """One input: a case name (several inputs may share it, e.g. a sweep) and its size."""

    name: str
    n: int
    d: int


class Fit(NamedTuple):
    """The outcome of one library on one input."""

    status: str
    seconds: float | None = None
    median: float | None = None
    repeats: int = 0
    peak_bytes: int | None = None
    labels: np.ndarray | None = None


def cases(quick: bool) -> list[Case]:
    """Inputs in increasing cost, so ``--max-seconds`` extrapolates from cheaper ones."""
    if quick:
        return [*(Case("sweep_d32", n, 32) for n in (200, 400, 800)),
                Case("blobs_1000x16", 1000, 16), Case("blobs_1000x64", 1000, 64)]
    return [*(Case("sweep_d32", n, 32) for n in (1000, 2000, 5000, 10000, 20000)),
            Case("blobs_20000x16", 20000, 16), Case("blobs_20000x64", 20000, 64),
            Case("blobs_100000x32", 100000, 32)]


def run(bench, quick: bool) -> None:
    """Run every case with every library and record the results (see the module doc)."""
    bench.describe(NAME, DESCRIPTION + " Configurations: " + "; ".join(
        lib.config for lib in hdbscan_libraries()))
    libraries = [lib for lib in hdbscan_libraries() if bench.wants_library(lib.name)]
    history: dict[str, list[tuple[int, int, float]]] = {}
    warmed: set[str] = set()
    for case in (c for c in cases(quick) if bench.wants_case(c.name)):
        points = blobs(case.n, case.d)
        fits = {}
        for lib in bench.progress(libraries, desc=f"{case.name} N={case.n} D={case.d}"):
            if lib.name not in warmed and _runnable(lib, case) is None:
                _record_first_call(bench, lib, case.d)
                warmed.add(lib.name)
            fits[lib.name] = _fit(bench, lib, case, points, quick, history)
        _record_case(bench, case, fits)


def _runnable(lib: Library, case: Case) -> str | None:
    if lib.unavailable is not None:
        return f"not installed: {lib.unavailable}"
    return lib.limit(case.n, case.d)


def _record_first_call(bench, lib: Library, d: int) -> None:
    """Time the first call in this process (JIT compilation or cache loading included)."""
    tiny = blobs(FIRST_CALL_N, d)
    try:
        seconds = bench.compile_time(lambda: lib.fit_labels(tiny))
        status = "ok"
    except Exception as exc:
        seconds, status = None, f"error: {type(exc).__name__}: {exc}"
    bench.record(NAME, "first_call", lib.name, seconds, status=status,
                 params={"n": FIRST_CALL_N, "d": d})


def _expected(bench, lib: Library, case: Case, history) -> tuple[float | None, str]:
    """Expected seconds of this call: the previous run's figure, else a crude O(N^2 D)
    extrapolation from this library's largest smaller input in this run."""
    params = {"n": case.n, "d": case.d}
    previous = bench.expected_seconds(NAME, case.name, lib.name, params)
    if previous is not None:
        return previous, "previous run"
    smaller = [h for h in history.get(lib.name, []) if h[0] <= case.n]
    if not smaller:
        return None, ""
    n0, d0, t0 = max(smaller)
    return t0 * (case.n / n0) ** 2 * (case.d / d0), "extrapolated as N^2 D"


def _fit(bench, lib: Library, case: Case, points, quick: bool, history) -> Fit:
    reason = _runnable(lib, case)
    if reason is not None:
        return Fit(reason)
    expected, source = _expected(bench, lib, case, history)
    if expected is not None:
        bench.log(f"  {lib.name} on {case.name} N={case.n}: expected ~{expected:.3g} s "
                  f"({source})")
    if bench.max_seconds is not None and expected is not None and expected > bench.max_seconds:
        return Fit(f"skipped: expected {expected:.3g} s > --max-seconds {bench.max_seconds:g}")
    labels = []
    try:
        timing = bench.time(lambda: labels.append(lib.fit_labels(points)),
                            repeat=1 if quick else 3, warmup=0, max_total_s=REPEAT_BUDGET_S)
    except Exception as exc:
        return Fit(f"error: {type(exc).__name__}: {exc}")
    history.setdefault(lib.name, []).append((case.n, case.d, timing.best))
    return Fit("ok", timing.best, timing.median, len(timing.times), timing.peak_bytes,
               labels[-1])


def same_partition(labels: np.ndarray, reference: np.ndarray) -> bool:
    """True when ``labels`` equals ``reference`` up to renaming of clusters: the same noise
    points (-1) and a one-to-one correspondence between the clusters."""
    if labels.shape != reference.shape or not np.array_equal(labels < 0, reference < 0):
        return False
    pairs = np.unique(np.stack([labels, reference]), axis=1).shape[1]
    return pairs == np.unique(labels).size == np.unique(reference).size


def _label_stats(fit: Fit, reference: np.ndarray | None) -> dict:
    from sklearn.metrics import adjusted_rand_score

    labels = fit.labels
    stats = {"n_clusters": int(np.unique(labels[labels >= 0]).size),
             "noise_fraction": float(np.mean(labels < 0))}
    if reference is not None:
        stats["same_labels_as_ref"] = same_partition(labels, reference)
        stats["ari_vs_ref"] = float(adjusted_rand_score(reference, labels))
    return stats


def _record_case(bench, case: Case, fits: dict[str, Fit]) -> None:
    ref_name = next((r for r in REFERENCES if fits.get(r, Fit("")).status == "ok"), None)
    reference = fits[ref_name].labels if ref_name else None
    for name, fit in fits.items():
        if fit.status != "ok":
            bench.record(NAME, case.name, name, None, status=fit.status,
                         params={"n": case.n, "d": case.d})
            continue
        speedups = {key: (fits[base].seconds / fit.seconds
                          if fits.get(base, Fit("")).status == "ok" else None)
                    for key, base in BASELINES.items()}
        bench.record(NAME, case.name, name, fit.seconds, params={"n": case.n, "d": case.d},
                     median_seconds=fit.median, repeats=fit.repeats, **speedups,
                     reference=ref_name, **_label_stats(fit, reference),
                     peak_bytes=fit.peak_bytes)
