"""Suite ``incremental``: exact streaming inserts against refits and FISHDBC.

A stream of seeded blobs (``benchmarks.datasets.blobs``, 10 centres, std 1.0, shuffled) is
fed to ``medscore.IncrementalHDBSCAN(min_cluster_size=5)`` in batches. Every insert is
timed (library ``medscore incremental``, ``n`` = memory size after the insert). At a few
checkpoints the live points are refitted by every batch library of ``benchmarks.libraries``
(``hdbscan`` exact and default, medscore's batch backends, fast_hdbscan for D <= 30,
sklearn for N <= 20k); the records say whether the incremental labels equal medscore's
batch labels up to renaming, and how many times faster the insert was than each refit.
FISHDBC (``fishdbc`` on PyPI, approximate) gets the same batches through ``update`` after
medscore's stream (so that neither disturbs the other's timings) and is timed per batch
including ``cluster()``, with its ARI against the exact labels after the same insert. Peak
memory is probed on a few inserts only (the probe trims the heap first, which costs the probed
insert fresh page faults), never on the timed insert of a checkpoint.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..datasets import blobs
from ..libraries import hdbscan_libraries

NAME = "incremental"
DESCRIPTION = ("Exact incremental HDBSCAN (medscore.IncrementalHDBSCAN, min_cluster_size=5, "
               "C++ engine) per-batch insert time vs refits (hdbscan exact/default, medscore "
               "batch, fast_hdbscan D<=30, sklearn N<=20k) and FISHDBC (time, ARI vs exact); "
               "insert cost against memory size (10k-300k x 32) next to a refit.")
#: Refits stop repeating after this many seconds per library and checkpoint.
REFIT_BUDGET_S = 60.0


class Stream(NamedTuple):
    """One stream: final size, dimension, batch size, memory sizes where refits run."""

    name: str
    n: int
    d: int
    batch: int
    checkpoints: tuple
    refits: bool = True
    fishdbc: bool = True


def streams(quick: bool) -> list[Stream]:
    if quick:
        return [Stream("stream_d32", 4096, 32, 256, (2048, 4096)),
                Stream("stream_d64", 2048, 64, 256, (2048,))]
    return [Stream("stream_d32", 100_000, 32, 1024, (10_240, 50_176, 100_000)),
            Stream("stream_d64", 20_000, 64, 1024, (10_240, 20_000)),
            Stream("stream_1m_d16", 1_000_000, 16, 1024, (), refits=False, fishdbc=False)]


def sweep(quick: bool) -> tuple[int, int, list[int]]:
    """(memory size, dimension, batch sizes) of the batch-size sweep."""
    if quick:
        return 2000, 32, [1, 16, 256]
    return 20_000, 32, [1, 16, 128, 1024, 4096]


def curve(quick: bool) -> tuple[int, tuple, tuple]:
    """(dimension, memory sizes, batch sizes) of the insert-cost curve."""
    if quick:
        return 32, (2000, 4000), (16, 256)
    return 32, (10_000, 30_000, 100_000, 300_000), (16, 1024)


#: Inserts timed per (memory size, batch size) after one untimed insert of the same size
#: (which builds the engine's kd-tree after the big insert that grew the memory).
CURVE_REPEAT = 3


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a < 0, b < 0):
        return False
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist()))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def _fishdbc():
    try:
        from fishdbc import FISHDBC
    except ImportError as exc:
        return None, f"not installed: {exc} (pip install fishdbc)"
    return FISHDBC, None


def _refits(bench, stream, points, insert_seconds, labels):
    """Time every batch library on ``points`` and record speed-ups of the insert."""
    n, d = points.shape
    for lib in hdbscan_libraries():
        if not bench.wants_library(lib.name):
            continue
        params = {"n": n, "d": d, "batch": stream.batch}
        reason = lib.unavailable or lib.limit(n, d)
        if reason:
            bench.record(NAME, stream.name + "_refit", lib.name, None, status=reason, params=params)
            continue
        out = []
        timing = bench.time(lambda: out.append(lib.fit_labels(points)), repeat=2, warmup=0,
                            max_total_s=REFIT_BUDGET_S)
        bench.record(NAME, stream.name + "_refit", lib.name, timing.best, params=params,
                     speedup_of_insert=timing.best / insert_seconds,
                     labels_identical=_same_partition(labels, out[-1]),
                     peak_bytes=timing.peak_bytes)


#: Peak memory is measured on every this many recorded inserts (the probe trims the heap
#: first, so the probed insert pays fresh page faults: it is not the timed one at a checkpoint).
MEMORY_PROBE_EVERY = 10


def _run_stream(bench, stream, quick):
    import medscore

    points = blobs(stream.n, stream.d, seed=1)[np.random.default_rng(1).permutation(stream.n)]
    model = medscore.IncrementalHDBSCAN(min_cluster_size=5)
    model.insert(points[:32])  # compile (or load) the Numba kernels outside the timings
    model.remove(model.ids_)
    steps = range(0, stream.n, stream.batch)
    record_every = max(1, len(steps) // 50)
    exact_labels = {}  # n -> labels after that insert, for FISHDBC's ARI
    for step, start in enumerate(bench.progress(steps, desc=stream.name)):
        batch = points[start:start + stream.batch]
        seconds = []

        def timed_insert():
            t0 = time.perf_counter()
            model.insert(batch)
            seconds.append(time.perf_counter() - t0)

        n = start + len(batch)
        record = n in stream.checkpoints or step % record_every == 0 or n == stream.n
        probe_memory = (record and n not in stream.checkpoints
                        and (step // record_every) % MEMORY_PROBE_EVERY == 0)
        extra = {}
        if probe_memory:
            extra["peak_bytes"] = bench.peak_memory(timed_insert).bytes
        else:
            timed_insert()
        params = {"n": n, "d": stream.d, "batch": stream.batch}
        if record:
            bench.record(NAME, stream.name, "medscore incremental", seconds[0], params=params, **extra)
            exact_labels[n] = model.labels_.copy()
        if stream.refits and n in stream.checkpoints:
            _refits(bench, stream, points[:n], seconds[0], model.labels_)
    if stream.fishdbc and bench.wants_library("fishdbc"):
        _run_fishdbc(bench, stream, points, exact_labels)


def _run_fishdbc(bench, stream, points, exact_labels):
    """The same batches through FISHDBC's update (+ cluster() where medscore was recorded),
    after medscore's stream so that neither library's heap or caches disturb the other's times."""
    from sklearn.metrics import adjusted_rand_score

    FISHDBC, reason = _fishdbc()
    if FISHDBC is None:
        bench.record(NAME, stream.name, "fishdbc", None, status=reason)
        return
    fish = FISHDBC.from_metric(min_samples=5)
    for start in bench.progress(range(0, stream.n, stream.batch), desc=stream.name + " fishdbc"):
        batch = points[start:start + stream.batch]
        n = start + len(batch)
        t0 = time.perf_counter()
        fish.update(list(batch))
        if n in exact_labels:
            labels = fish.cluster(min_cluster_size=5).labels
            bench.record(NAME, stream.name, "fishdbc", time.perf_counter() - t0,
                         params={"n": n, "d": stream.d, "batch": stream.batch},
                         ari_vs_exact=float(adjusted_rand_score(exact_labels[n], labels)))


def _run_sweep(bench, quick):
    import medscore

    n, d, sizes = sweep(quick)
    points = blobs(n + max(sizes), d, seed=2)
    model = medscore.IncrementalHDBSCAN(min_cluster_size=5)
    model.insert(points[:n])
    for size in bench.progress(sizes, desc="batch sweep"):
        batch = points[n:n + size]
        timing = bench.time(lambda: model.insert(batch), repeat=1, warmup=0)
        model.remove(model.ids_[-size:])  # back to the same memory for the next size
        bench.record(NAME, "batch_sweep", "medscore incremental", timing.best,
                     params={"n": n, "d": d, "batch": size}, per_point_s=timing.best / size)


def _run_curve(bench, quick):
    """Insert cost against memory size: at each size, small and large batches into the
    memory (median of CURVE_REPEAT consecutive inserts, as in a stream) and a batch refit of
    the same points by medscore's C++ backend in the same run; the records carry the ratio."""
    import medscore

    d, sizes, batches = curve(quick)
    extra = CURVE_REPEAT * len(sizes) * (1 + sum(batches))
    points = blobs(max(sizes) + extra, d, seed=3)
    model = medscore.IncrementalHDBSCAN(min_cluster_size=5)
    used = 0
    for n in bench.progress(sizes, desc="insert curve"):
        model.insert(points[used:n])  # grow the memory (a rebuild: the batch is large)
        used = n
        refit = bench.time(lambda: medscore.HDBSCAN(min_cluster_size=5).fit(model.points_),
                           repeat=1, warmup=0)
        bench.record(NAME, "insert_curve", "medscore cpp refit", refit.best, params={"n": n, "d": d})
        for size in batches:
            model.insert(points[used:used + size])
            used += size
            seconds = []
            for _ in range(CURVE_REPEAT):
                t0 = time.perf_counter()
                model.insert(points[used:used + size])
                seconds.append(time.perf_counter() - t0)
                used += size
            median = float(np.median(seconds))
            bench.record(NAME, "insert_curve", f"medscore incremental, batch {size}", median,
                         params={"n": n, "d": d, "batch": size},
                         all_s=" ".join(f"{x:.4f}" for x in seconds),
                         refit_over_insert=refit.best / median)


def run(bench, quick: bool) -> None:
    """Run the streams and the batch-size sweep (``quick``: small sizes for a smoke run)."""
    bench.describe(NAME, DESCRIPTION)
    for stream in streams(quick):
        if bench.wants_case(stream.name):
            _run_stream(bench, stream, quick)
    if bench.wants_case("batch_sweep"):
        _run_sweep(bench, quick)
    if bench.wants_case("insert_curve"):
        _run_curve(bench, quick)
    bench.write(NAME)
