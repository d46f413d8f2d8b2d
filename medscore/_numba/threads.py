"""Numba's thread count for one call (``n_threads=0``: every thread Numba was started with)."""
from contextlib import contextmanager

import numba


@contextmanager
def thread_limit(n_threads: int):
    """Run the body with ``min(n_threads, numba.config.NUMBA_NUM_THREADS)`` threads, then restore."""
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0, got {n_threads}")
    previous = numba.get_num_threads()
    if n_threads > 0:
        numba.set_num_threads(min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    else:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
