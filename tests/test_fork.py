"""Processes forked after the Numba backend ran, and its threads (issue 20, item 3).

Numba's default threading layer on Linux without TBB is GNU OpenMP, which cannot fork: a child
forked after a parallel kernel ran is killed (SIGTERM) at its first one. Data-loader workers
and ``multiprocessing`` fork from the trainer, so ``medscore._numba.threads`` picks Numba's
fork-safe layer unless the user chose one, and serialises kernels where that layer is not
thread safe (workqueue). Every case runs in a child interpreter with a timeout, since the
failures are kills, aborts and hangs.
"""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytest.importorskip("numba")

#: Work that touches every Numba entry point (memory step, batch fit, incremental repair) and
#: the C++ backend; returns plain numbers to compare across processes.
WORKLOAD = textwrap.dedent("""
    import os, signal, sys, threading
    import numpy as np
    import medscore

    def workload(seed):
        rng = np.random.default_rng(seed)
        X = np.concatenate([rng.normal(size=(150, 6)), rng.normal(size=(150, 6)) + 8.0])
        keys = np.repeat(np.arange(10), 30)
        memory = medscore.Memory(backend="numba")
        penalties = memory.penalize(medscore.Batch(X, keys=keys, correct=np.zeros(300, bool)))
        numba_labels = medscore.HDBSCAN(min_cluster_size=5, backend="numba").fit(X).labels_
        cpp_labels = medscore.HDBSCAN(min_cluster_size=5, backend="cpp").fit(X).labels_
        assert np.array_equal(numba_labels, cpp_labels)
        # knn="exact": FAISS's own OpenMP pool hangs in a child forked after it ran.
        inc = medscore.IncrementalHDBSCAN(min_cluster_size=5, backend="numba", knn="exact")
        inc.insert(X[:200])
        inc.insert(X[200:])
        return penalties.tolist() + numba_labels.tolist() + inc.labels_.tolist()

    def in_child(body):
        # Runs body() in a forked child; its exit status (0 when body returns).
        pid = os.fork()
        if pid == 0:
            signal.alarm(120)  # a hung child dies instead of outliving the test
            try:
                body()
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
""")


def run_script(body: str, env_changes=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run WORKLOAD + body as a script file (spawn re-imports it) in a fresh interpreter.

    No threading layer is chosen in its environment unless ``env_changes`` sets one.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    env.update(env_changes or {})
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fork_case.py")
        with open(path, "w") as f:
            f.write(WORKLOAD + textwrap.dedent(body))
        return subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=timeout, env=env)


def assert_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip().endswith("ok"), done.stdout[-2000:]


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    """Compile (and cache on disk) the workload's kernels once, so children only load them."""
    assert_ok(run_script("workload(0); print('ok')"))


def test_forked_child_uses_medscore_after_the_numba_backend_ran():
    assert_ok(run_script("""
        want = workload(1)
        def child():
            assert workload(1) == want
            assert workload(2) != want
        status = in_child(child)
        assert status == 0, status
        assert workload(1) == want  # the parent goes on too
        print("ok")
    """))


def test_multiprocessing_fork_pool_after_the_numba_backend_ran():
    assert_ok(run_script("""
        import multiprocessing
        if __name__ == "__main__":
            want = [workload(seed) for seed in range(3)]
            with multiprocessing.get_context("fork").Pool(2) as pool:
                # A killed worker hangs Pool.map: bound the wait.
                got = pool.map_async(workload, range(3)).get(timeout=180)
            assert got == want
            print("ok")
    """))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_fresh_interpreter_start_methods(method):
    assert_ok(run_script(f"""
        import multiprocessing
        if __name__ == "__main__":
            want = workload(3)
            with multiprocessing.get_context("{method}").Pool(1) as pool:
                assert pool.map_async(workload, [3]).get(timeout=240) == [want]
            print("ok")
    """))


def test_fork_while_another_thread_runs_a_kernel():
    # The kernel lock (and Numba's pool) may be held by the parent's other thread at the
    # fork; the child must start clean.
    assert_ok(run_script("""
        X = np.random.default_rng(4).normal(size=(20000, 3))
        want = medscore.HDBSCAN(min_cluster_size=5, backend="numba").fit(X[:3000]).labels_
        stop = threading.Event()
        def busy():
            while not stop.is_set():
                medscore.HDBSCAN(min_cluster_size=5, backend="numba").fit(X)
        worker = threading.Thread(target=busy)
        worker.start()
        def child():
            got = medscore.HDBSCAN(min_cluster_size=5, backend="numba").fit(X[:3000]).labels_
            assert np.array_equal(got, want)
        try:
            statuses = [in_child(child) for _ in range(4)]
        finally:
            stop.set()
            worker.join()
        assert statuses == [0] * 4, statuses
        print("ok")
    """))


def test_threads_share_the_numba_backend():
    # workqueue aborts the process when two threads enter parallel kernels at once; the
    # kernel lock makes them take turns.
    assert_ok(run_script("""
        from concurrent.futures import ThreadPoolExecutor
        want = [workload(seed) for seed in range(4)]
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(workload, range(4))) == want
        print("ok")
    """))


def test_layer_is_fork_safe_by_default():
    done = run_script("""
        import numba
        import medscore._numba
        print(numba.threading_layer(), "ok")
    """)
    assert_ok(done)
    assert done.stdout.split()[0] in ("workqueue", "tbb")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Numba's omp layer is GNU OpenMP on Linux")
@pytest.mark.parametrize("how", ["env", "config"])
def test_a_layer_chosen_by_the_user_is_kept(how):
    done = run_script(f"""
        import numba
        if {how!r} == "config":
            numba.config.THREADING_LAYER = "omp"
        medscore.HDBSCAN(backend="numba").fit(np.random.default_rng(6).normal(size=(100, 3)))
        print(numba.threading_layer(), "ok")
    """, env_changes={"NUMBA_THREADING_LAYER": "omp"} if how == "env" else None)
    assert_ok(done)
    assert done.stdout.split()[0] == "omp"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU OpenMP's fork limit is Linux's")
def test_forced_openmp_refuses_in_a_forked_child_instead_of_dying():
    # The user forced omp: the child cannot run Numba kernels, but gets an error it can act
    # on (and the C++ backend still works) instead of a SIGTERM.
    done = run_script("""
        import numba
        want = workload(5)
        if numba.threading_layer() != "omp":
            print("no GNU OpenMP layer here: ok")
            sys.exit(0)
        def child():
            X = np.random.default_rng(5).normal(size=(100, 3))
            try:
                medscore.HDBSCAN(backend="numba").fit(X)
            except RuntimeError as exc:
                assert "forked after Numba's GNU OpenMP" in str(exc), exc
            else:
                raise AssertionError("no RuntimeError")
            medscore.HDBSCAN(backend="cpp").fit(X)
        assert in_child(child) == 0
        print("ok")
    """, env_changes={"NUMBA_THREADING_LAYER": "omp"})
    assert_ok(done)


def test_forked_child_searches_with_faiss_after_the_parent_did():
    # FAISS's OpenMP pool does not survive fork: the child's first search used to hang.
    pytest.importorskip("faiss")
    assert_ok(run_script("""
        rng = np.random.default_rng(3)
        X = np.concatenate([rng.normal(size=(150, 6)), rng.normal(size=(150, 6)) + 8.0])
        def labels():
            inc = medscore.IncrementalHDBSCAN(min_cluster_size=5, backend="numba", knn="faiss")
            inc.insert(X[:200])
            inc.insert(X[200:])
            return inc.labels_.tolist()
        want = labels()
        def child():
            assert labels() == want
        status = in_child(child)
        assert status == 0, status
        print("ok")
    """, timeout=240))
