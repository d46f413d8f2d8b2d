"""Suite ``memory``: ``Memory(preset="paper").penalize`` per step against the MEDS reference.

A simulated MEDS run (``tests/meds_reference.simulated_run``): P prompts x 16 rollouts per
step, 14-dimensional fingerprints with a few recurring modes per prompt, one step per epoch.
For every epoch the suite times one ``penalize`` step of medscore (cpp, and numba where it
imports) and of the reference procedure (real ``hdbscan`` refit per group + scikit-learn
3-NN vote; only on the epochs listed in REFERENCE_EPOCHS, it takes seconds per step) and
records the speed-up. It also records a global memory (one key) grown to G points: the time
of one step of 16 rollouts on it and the peak memory per stored point. Its cases, ``step``
and ``global_step``, can be picked with ``--case``; each step also records its CPU seconds
(all threads) and the 1-minute load average, since the machine may be shared.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

NAME = "memory"
DESCRIPTION = ("MEDS error memory: Memory(preset='paper').penalize per step (P prompts x 16 "
               "rollouts, D=14, epochs 1..E) vs the reference procedure (hdbscan refit per "
               "group + sklearn 3-NN vote); a global memory of G points.")


def _reference_module():
    tests = Path(__file__).resolve().parents[2] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import meds_reference

    return meds_reference


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(prompts=64, epochs=3, reference_epochs=(1, 3), global_points=(20_000,))
    return dict(prompts=512, epochs=10, reference_epochs=(1, 2, 5, 10), global_points=(100_000, 1_000_000))


def run(bench, quick: bool) -> None:
    """Record per-epoch step times, speed-ups and the global-memory figures."""
    bench.describe(NAME, DESCRIPTION)
    sizes = _sizes(quick)
    if bench.wants_case("step"):
        _run_epochs(bench, sizes)
    if bench.wants_case("global_step"):
        for n in sizes["global_points"]:
            _run_global(bench, n)


def _run_epochs(bench, sizes) -> None:
    import medscore

    ref = _reference_module()
    backends = [b for b in ("cpp", "numba") if bench.wants_library(f"medscore {b}")]
    memories = {b: medscore.Memory(preset="paper", backend=b) for b in backends}
    reference = ref.ReferenceMEDS()
    params = {"prompts": sizes["prompts"], "rollouts": 16, "d": 14}
    run = ref.simulated_run(sizes["prompts"], epochs=sizes["epochs"], seed=0)
    for epoch, (X, keys, correct) in enumerate(bench.progress(run, desc="epochs"), start=1):
        batch = medscore.Batch(X, keys, correct)
        times, cpu = {}, {}
        for name, memory in list(memories.items()):
            try:
                start, start_cpu = time.perf_counter(), time.process_time()
                memory.penalize(batch)
                times[name] = time.perf_counter() - start
                cpu[name] = time.process_time() - start_cpu
            except ImportError as exc:
                bench.record(NAME, "step", f"medscore {name}", None, status=f"not installed: {exc}", params=params)
                del memories[name]
        # The reference's BLAS calls (scikit-learn, hdbscan) leave OpenBLAS threads
        # busy-waiting for a while, on the same 2 cores as the next medscore step; one BLAS
        # thread for the reference stops that (its single-step timing barely changes).
        with _one_blas_thread():
            if epoch in sizes["reference_epochs"]:
                start = time.perf_counter()
                reference.step(X, keys, correct)
                times["reference"] = time.perf_counter() - start
            else:
                reference.step(X, keys, correct)  # keep its memory in step, untimed
        for name, seconds in times.items():
            # CPU seconds (all threads) and the load show how much a shared machine slowed the wall time.
            extra = {"load_1min": round(os.getloadavg()[0], 2)}
            if name in cpu:
                extra["cpu_seconds"] = cpu[name]
            if name != "reference" and "reference" in times:
                extra["speedup_vs_reference"] = times["reference"] / seconds
            library = "reference (hdbscan + sklearn)" if name == "reference" else f"medscore {name}"
            bench.record(NAME, "step", library, seconds, params={**params, "epoch": epoch}, **extra)


def _one_blas_thread():
    """Context limiting BLAS/OpenMP pools to one thread (threadpoolctl), or a no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _run_global(bench, n_points: int) -> None:
    import medscore

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(200, 14))
    memory = medscore.Memory(keyed=False, store="all")
    chunk = 50_000
    chunk_seconds = []  # each chunk's penalize: the first refits, later ones insert

    def grow():
        for start in bench.progress(range(0, n_points, chunk), desc=f"global {n_points}"):
            m = min(chunk, n_points - start)
            X = centres[rng.integers(0, 200, m)] + 0.1 * rng.normal(size=(m, 14))
            began = time.perf_counter()
            memory.penalize(medscore.Batch(X, np.zeros(m, np.int64), np.zeros(m, bool)))
            chunk_seconds.append(round(time.perf_counter() - began, 2))

    start = time.perf_counter()
    peak = bench.peak_memory(grow)
    build_s = time.perf_counter() - start
    X = centres[rng.integers(0, 200, 16)] + 0.1 * rng.normal(size=(16, 14))
    step = bench.time(lambda: memory.penalize(medscore.Batch(X, np.zeros(16, np.int64), np.zeros(16, bool))),
                      repeat=3, warmup=0)
    bench.record(NAME, "global_step", "medscore cpp", step.best, params={"points": n_points, "rollouts": 16, "d": 14},
                 build_seconds=build_s, peak_bytes=peak.bytes, memory_method=peak.method,
                 bytes_per_point=peak.bytes / n_points, chunk_seconds=" ".join(map(str, chunk_seconds)),
                 load_1min=round(os.getloadavg()[0], 2))
