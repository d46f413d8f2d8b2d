"""Numba's threading layer and thread count for medscore's kernels.

**Layer.** Numba picks one threading layer per process, when its threads first start. Its
default order (tbb, omp, workqueue) gives GNU OpenMP on Linux when TBB is not installed, and
a process that started GNU OpenMP cannot fork: the child's first parallel kernel kills it
with SIGTERM ("fork() called from a process already using GNU OpenMP"). Data-loader workers
and ``multiprocessing`` fork from the trainer's process. So, when this module is imported
(with the Numba backend), medscore asks for Numba's ``"forksafe"`` layer (TBB if installed,
else workqueue on Linux) and starts Numba's threads at once, which fixes that choice for the
process. It does not when the user chose: ``NUMBA_THREADING_LAYER`` or
``NUMBA_THREADING_LAYER_PRIORITY`` set in the environment, ``numba.config.THREADING_LAYER``
set to anything but ``"default"``, or Numba's threads already started.

**Thread safety.** workqueue is not thread safe: two threads inside parallel kernels at once
abort the process. While it is the layer, every medscore kernel call (``thread_limit``,
``serialised``) holds one process-wide lock, so concurrent calls take turns; each kernel
already uses every thread it is given. The lock is new in a forked child.

**Forked after OpenMP.** Where the layer is omp on Linux (the user's choice) and a process
forks after Numba's threads started, medscore's Numba calls in the child raise
``RuntimeError`` instead of letting the child be killed.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
from contextlib import contextmanager, nullcontext

import numba
from numba.np.ufunc import parallel as _parallel

#: The layer medscore asks for when the user chose none (Numba's own name for it).
FORK_SAFE_LAYER = "forksafe"

_kernel_lock = threading.RLock()
_forked_after_openmp = False


def user_chose_layer() -> bool:
    """Whether the threading layer is the user's choice (environment or ``numba.config``)."""
    chosen_in_env = any(name in os.environ for name in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"))
    return chosen_in_env or str(numba.config.THREADING_LAYER).lower() != "default"


def choose_threading_layer() -> str:
    """Ask for the fork-safe layer unless the user chose one; start Numba's threads.

    Returns the layer in use (``numba.threading_layer()``). Called once, at import.
    """
    if not _parallel._is_initialized and not user_chose_layer():
        numba.config.THREADING_LAYER = FORK_SAFE_LAYER
    numba.get_num_threads()  # starts the threads: the layer is fixed from here on
    return numba.threading_layer()


def _kernel_guard():
    """The process-wide lock where the layer is not thread safe (workqueue), else no lock."""
    if _forked_after_openmp:
        raise RuntimeError(
            "medscore's Numba backend cannot run in a process forked after Numba's GNU OpenMP "
            "threading layer started (the child would be killed). Leave NUMBA_THREADING_LAYER "
            "unset (medscore then picks a fork-safe layer), set it to 'workqueue' or 'tbb', use "
            "the 'spawn' or 'forkserver' start method, or backend='cpp'.")
    numba.get_num_threads()  # starts the threads if a user's choice left them unstarted
    return _kernel_lock if numba.threading_layer() == "workqueue" else nullcontext()


@contextmanager
def thread_limit(n_threads: int):
    """Run the body with ``min(n_threads, numba.config.NUMBA_NUM_THREADS)`` threads, then restore.

    ``n_threads=0`` means every thread Numba was started with. Holds the kernel lock where
    the layer needs it (see the module notes).
    """
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0, got {n_threads}")
    with _kernel_guard():
        previous = numba.get_num_threads()
        if n_threads > 0:
            numba.set_num_threads(min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
        else:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def serialised(kernel):
    """``kernel`` (a parallel Numba function) behind the kernel lock, as a Python function."""
    @functools.wraps(kernel)
    def call(*args):
        with _kernel_guard():
            return kernel(*args)
    call.kernel = kernel
    return call


def _after_fork_in_child() -> None:
    global _kernel_lock, _forked_after_openmp
    _kernel_lock = threading.RLock()  # a thread of the parent may have held it
    if _parallel._is_initialized and sys.platform.startswith("linux"):
        _forked_after_openmp = _forked_after_openmp or numba.threading_layer() == "omp"


os.register_at_fork(after_in_child=_after_fork_in_child)
choose_threading_layer()
