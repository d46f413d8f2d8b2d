"""Hypothesis generators of point sets and HDBSCAN parameters for the shared suite.

Points are drawn from a numpy generator seeded by hypothesis (one integer per shape
choice), so examples are cheap and still reproducible. The kinds cover what breaks exact
HDBSCAN: Gaussian blobs, uniform noise, integer grids (many exactly tied distances),
rows repeated many times (distance 0, lambda inf), far outliers, and chains of evenly
spaced points bridging two clusters.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

KINDS = ("blobs", "uniform", "grid", "duplicates", "outliers", "bridge")


def make_points(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    """A float64 ``[n, dim]`` point set of the given ``kind``."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, dim))
    if kind == "grid":
        return rng.integers(0, 4, size=(n, dim)).astype(np.float64)
    if kind == "duplicates":
        unique = _blobs(rng, int(rng.integers(1, 8)), dim)
        return unique[rng.integers(0, len(unique), size=n)]
    if kind == "outliers":
        X = _blobs(rng, n, dim)
        far = rng.random(n) < 0.05
        X[far] += rng.choice([1e3, -1e4, 1e6], size=(int(far.sum()), 1))
        return X
    if kind == "bridge":
        return _bridge(rng, n, dim)
    return _blobs(rng, n, dim)


def _blobs(rng, n: int, dim: int) -> np.ndarray:
    centers = rng.normal(scale=5.0, size=(int(rng.integers(1, 5)), dim))
    spread = rng.uniform(0.2, 1.5, size=len(centers))
    which = rng.integers(0, len(centers), size=n)
    return centers[which] + rng.normal(size=(n, dim)) * spread[which, None]


def _bridge(rng, n: int, dim: int) -> np.ndarray:
    """Two blobs on the first axis joined by evenly spaced points (tied gaps)."""
    n_bridge = n // 4
    n_blob = n - n_bridge
    X = rng.normal(scale=0.5, size=(n_blob, dim))
    X[: n_blob // 2, 0] -= 5.0
    X[n_blob // 2:, 0] += 5.0
    bridge = np.zeros((n_bridge, dim))
    bridge[:, 0] = np.linspace(-4.0, 4.0, n_bridge) if n_bridge > 1 else 0.0
    return np.concatenate([X, bridge])[rng.permutation(n)]


@st.composite
def point_sets(draw, min_n: int = 1, max_n: int = 300, max_dim: int = 64, kinds=KINDS):
    """Float64 C-contiguous point sets ``[N, D]`` of one of ``kinds``."""
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(min_n, max_n))
    dim = draw(st.one_of(st.integers(1, 8), st.integers(1, max_dim)))
    seed = draw(st.integers(0, 2**32 - 1))
    return make_points(kind, n, dim, seed)


@st.composite
def hdbscan_params(draw, max_min_cluster_size: int = 50, max_min_samples: int = 20):
    """Keyword arguments of the backends' ``fit`` except ``epsilon`` (see epsilon_for)."""
    return dict(
        min_cluster_size=draw(st.integers(2, max_min_cluster_size)),
        min_samples=draw(st.integers(1, max_min_samples)),
        method=draw(st.sampled_from(["eom", "leaf"])),
        allow_single_cluster=draw(st.booleans()),
    )


#: How epsilon is picked from the MST weights: 0, exactly a weight (boundary cases of the
#: ">=" and ">" comparisons), or between weights.
EPSILON_CHOICES = ("zero", "at_weight", "between")


def epsilon_for(choice: str, mst_weights: np.ndarray, quantile: float) -> float:
    """``cluster_selection_epsilon`` for a dataset whose sorted MST weights are given."""
    positive = mst_weights[mst_weights > 0]
    if choice == "zero" or len(positive) == 0:
        return 0.0
    value = float(positive[int(quantile * (len(positive) - 1))])
    return value if choice == "at_weight" else value * 1.0001


epsilons = st.tuples(st.sampled_from(EPSILON_CHOICES), st.floats(0.0, 1.0))
