"""Union-find over ``0..n-1`` as a plain int64 parent array (path halving, union by size)."""
import numba
import numpy as np


@numba.njit(cache=True)
def make_disjoint_set(n):
    """Parent and size arrays (int64 [n]) of n singleton sets."""
    return np.arange(n), np.ones(n, np.int64)


@numba.njit(cache=True, inline="always")
def find_root(parent, x):
    """Root of ``x``'s set, halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True, inline="always")
def union_roots(parent, size, ra, rb):
    """Join the sets of roots ``ra != rb``; returns the new root."""
    if size[ra] < size[rb]:
        ra, rb = rb, ra
    parent[rb] = ra
    size[ra] += size[rb]
    return ra
