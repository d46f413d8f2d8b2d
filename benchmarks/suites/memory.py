"""Suite ``memory``: ``Memory(preset="paper").penalize`` per step against the MEDS reference.

A simulated MEDS run (``tests/meds_reference.simulated_run``): P prompts x 16 rollouts per
step, 14-dimensional fingerprints with a few recurring modes per prompt, one step per epoch.
For every epoch the suite times one ``penalize`` step of medscore (cpp, and numba where it
imports) and, on the reference epochs (``_sizes``; seconds per step), the reference procedure:
real ``hdbscan`` refit per group + scikit-learn 3-NN vote, both as published (a fresh k-NN
model per new rollout, MEDS.md) and batched (one k-NN model per group; the same answers).
It records the speed-up against each. A full-size step of each side on throwaway state
runs first (``_warm_up``). The whole run is repeated (``runs`` in ``_sizes``: 3) with fresh
state; each epoch's figure is the median over the runs (its min and max are recorded too),
and the speed-ups are ratios of medians.
It also records a global memory (one key) grown to G points: the time
of one step of 16 rollouts on it and the peak memory per stored point. Its cases, ``step``
and ``global_step``, can be picked with ``--case``; each step also records its CPU seconds
(all threads) and the 1-minute load average, since the machine may be shared.
Case ``stream``: a stream of fresh prompts (8 new prompts x 4 rollouts every step, none ever
seen again) into ``Memory(max_age=5)``; every few hundred steps it records the points held,
the keys held, the process's resident memory and the mean step time of the last window, which
must stay flat (issue 20: points of keys that never returned used to be kept forever).
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
        return dict(prompts=64, epochs=3, reference_epochs=(1, 3), global_points=(20_000,), runs=1,
                    stream_steps=400)
    return dict(prompts=512, epochs=10, reference_epochs=(1, 2, 5, 10), global_points=(100_000, 1_000_000),
                runs=3, stream_steps=10_000)


def _resident_bytes() -> int:
    """The process's resident set now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run_stream(bench, n_steps: int, window: int = 100) -> None:
    """Record points, keys, RSS and the mean step time of the last ``window`` steps, ten times."""
    import medscore

    rng = np.random.default_rng(2)
    memory = medscore.Memory(max_age=5)
    prompts, rollouts, dim = 8, 4, 14
    began = time.perf_counter()
    for step in bench.progress(range(n_steps), desc="fresh-prompt stream"):
        keys = np.repeat(np.arange(step * prompts, (step + 1) * prompts), rollouts)
        X = np.repeat(rng.normal(size=(prompts * 2, dim)), rollouts // 2, axis=0) + 1e-3 * rng.normal(
            size=(prompts * rollouts, dim))
        memory.penalize(medscore.Batch(X, keys, np.zeros(prompts * rollouts, bool), step=step))
        if (step + 1) % max(window, n_steps // 10) == 0:
            seconds = (time.perf_counter() - began) / window
            metrics = memory.metrics()
            bench.record(NAME, "stream", "medscore cpp", seconds,
                         params={"step": step + 1, "prompts_per_step": prompts, "rollouts": rollouts, "max_age": 5,
                                 "d": dim},
                         points=int(metrics["points"]), keys=int(metrics["keys"]), rss_bytes=_resident_bytes())
        if (step + 1) % window == 0:
            began = time.perf_counter()


def run(bench, quick: bool) -> None:
    """Record per-epoch step times, speed-ups and the global-memory figures."""
    bench.describe(NAME, DESCRIPTION)
    sizes = _sizes(quick)
    if bench.wants_case("step"):
        _run_epochs(bench, sizes)
    if bench.wants_case("global_step"):
        for n in sizes["global_points"]:
            _run_global(bench, n)
    if bench.wants_case("stream"):
        _run_stream(bench, sizes["stream_steps"])


def _run_epochs(bench, sizes) -> None:
    """sizes["runs"] runs of the simulated training in this process, each with its own
    warm-up, fresh memories and a fresh reference on the same data; each epoch's figure is
    the median over the runs, with the speed-ups taken between medians (a single step of a
    few milliseconds varies by +-20% on a shared 2-core machine)."""
    backends = [b for b in ("cpp", "numba") if bench.wants_library(f"medscore {b}")]
    runs = [_one_run(bench, sizes, backends, r) for r in range(sizes["runs"])]
    params = {"prompts": sizes["prompts"], "rollouts": 16, "d": 14}
    names = [name for name in (*backends, "reference", "reference batched") if name in runs[0]]
    for epoch in range(1, sizes["epochs"] + 1):
        median = {}
        for name in names:
            seconds = [run[name][epoch]["seconds"] for run in runs if epoch in run.get(name, {})]
            if seconds:
                median[name] = float(np.median(seconds))
        for name, seconds in median.items():
            per_run = [run[name][epoch] for run in runs if epoch in run.get(name, {})]
            extra = {"runs": len(per_run), "load_1min": max(r["load_1min"] for r in per_run)}
            if len(per_run) > 1:
                extra["min_seconds"] = min(r["seconds"] for r in per_run)
                extra["max_seconds"] = max(r["seconds"] for r in per_run)
                extra["runs_seconds"] = " ".join(f"{r['seconds']:.4g}" for r in per_run)  # in run order
            if "cpu_seconds" in per_run[0]:
                extra["cpu_seconds"] = float(np.median([r["cpu_seconds"] for r in per_run]))
            if not name.startswith("reference") and "reference" in median:
                extra["speedup_vs_reference"] = median["reference"] / seconds
                extra["speedup_vs_batched_reference"] = median["reference batched"] / seconds
            library = {"reference": "reference, as published (hdbscan + sklearn k-NN per rollout)",
                       "reference batched": "reference, k-NN batched per group"}.get(name, f"medscore {name}")
            bench.record(NAME, "step", library, seconds, params={**params, "epoch": epoch}, **extra)
    for name in backends:
        if name not in runs[0]:
            bench.record(NAME, "step", f"medscore {name}", None, status=f"not installed: {runs[0]['errors'][name]}",
                         params=params)


def _one_run(bench, sizes, backends, index: int) -> dict:
    """One simulated run: {name: {epoch: {"seconds", "load_1min"[, "cpu_seconds"]}}} for the
    medscore backends that import and, on the reference epochs, both reference forms."""
    import copy

    import medscore

    ref = _reference_module()
    memories = {b: medscore.Memory(preset="paper", backend=b) for b in backends}
    reference = ref.ReferenceMEDS()
    out: dict = {"errors": {}}
    _warm_up(ref, medscore, sizes["prompts"], backends)
    run = ref.simulated_run(sizes["prompts"], epochs=sizes["epochs"], seed=0)
    for epoch, (X, keys, correct) in enumerate(bench.progress(run, desc=f"epochs (run {index + 1})"), start=1):
        batch = medscore.Batch(X, keys, correct)
        for name, memory in list(memories.items()):
            try:
                start, start_cpu = time.perf_counter(), time.process_time()
                memory.penalize(batch)
                seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            except ImportError as exc:
                out["errors"][name] = str(exc)
                del memories[name]
                continue
            # CPU seconds (all threads) and the load show how much a shared machine slowed the wall time.
            out.setdefault(name, {})[epoch] = {"seconds": seconds, "cpu_seconds": cpu,
                                               "load_1min": round(os.getloadavg()[0], 2)}
        # The reference's BLAS calls (scikit-learn, hdbscan) leave OpenBLAS threads
        # busy-waiting for a while, on the same 2 cores as the next medscore step; one BLAS
        # thread for the reference stops that (its single-step timing barely changes).
        with _one_blas_thread():
            if epoch in sizes["reference_epochs"]:
                # As published: a fresh k-NN model per new rollout (MEDS.md), on a copy of
                # the same state; then the batched variant (one k-NN model per group), which
                # also carries the state forward. Both give the same answers.
                published = copy.deepcopy(reference)
                published.knn_per_rollout = True
                start = time.perf_counter()
                published.step(X, keys, correct)
                seconds = time.perf_counter() - start
                del published
                out.setdefault("reference", {})[epoch] = {"seconds": seconds, "load_1min": round(os.getloadavg()[0], 2)}
                start = time.perf_counter()
                reference.step(X, keys, correct)
                out.setdefault("reference batched", {})[epoch] = {"seconds": time.perf_counter() - start,
                                                                  "load_1min": round(os.getloadavg()[0], 2)}
            else:
                reference.step(X, keys, correct)  # keep its memory in step, untimed
    return out


def _warm_up(ref, medscore, prompts: int, backends=("cpp",)) -> None:
    """One full-size step of each side on throwaway state, outside the timed steps.

    The simulated run puts every prompt in one step, so its epoch 1 would otherwise also be
    the process's first step (imports, worker threads, first growth of the heap and of the
    workspaces). In training, the first epoch spans many steps of new prompts and only one of
    them is the process's first; this keeps that one-off cost out of every epoch's figure.
    """
    X, keys, correct = next(iter(ref.simulated_run(prompts, epochs=1, seed=1)))
    with _one_blas_thread():
        ref.ReferenceMEDS(knn_per_rollout=True).step(X, keys, correct)
    for backend in reversed(backends):  # the first backend timed is the last one warmed
        try:
            medscore.Memory(preset="paper", backend=backend).penalize(medscore.Batch(X, keys, correct))
        except ImportError:  # reported by the timed steps
            pass


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
