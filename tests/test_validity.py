"""DBCV: ``medscore.validity_index`` and ``HDBSCAN.relative_validity_`` against ``hdbscan``.

The oracle is ``hdbscan.validity.validity_index`` and ``hdbscan.HDBSCAN(approx_min_span_tree=
False, gen_min_span_tree=True).relative_validity_`` on random Gaussian blobs (hypothesis
seeds). The library's distances are scikit-learn's dot-product form, medscore's the exact
sum, so the index agrees to rounding (rtol 1e-9), not bit for bit.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_backend
from medscore import HDBSCAN, validity_index
from medscore._backends import BACKENDS

hdbscan = pytest.importorskip("hdbscan")
from hdbscan.validity import validity_index as their_validity_index  # noqa: E402


def blobs(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(30, 150)), int(rng.integers(1, 5))
    centres = rng.normal(scale=5.0, size=(int(rng.integers(1, 5)), dim))
    X = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim))
    return rng, X


@settings(max_examples=25)
@given(seed=st.integers(0, 2**20), raw=st.booleans())
def test_validity_index_equals_hdbscan(seed, raw):
    rng, X = blobs(seed)
    labels = HDBSCAN(min_cluster_size=int(rng.integers(4, 12)), min_samples=3).fit(X).labels_
    if (np.bincount(labels[labels >= 0]) < 2).any() or labels.max() < 0:
        return
    ours, per = validity_index(X, labels, per_cluster_scores=True, mst_raw_dist=raw)
    theirs, their_per = their_validity_index(X, labels, per_cluster_scores=True, mst_raw_dist=raw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(per, their_per, rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**20))
def test_validity_index_precomputed_equals_hdbscan(seed):
    rng, X = blobs(seed)
    labels = rng.integers(-1, 3, len(X))
    if (np.bincount(labels[labels >= 0], minlength=3) < 2).any():
        return
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    ours = validity_index(D, labels, metric="precomputed", d=X.shape[1])
    theirs = their_validity_index(D, labels, metric="precomputed", d=X.shape[1])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(validity_index(X, labels), ours, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25)
@given(seed=st.integers(0, 2**20))
def test_relative_validity_equals_hdbscan(backend, seed):
    load_backend(backend)
    rng, X = blobs(seed)
    params = dict(min_cluster_size=int(rng.integers(3, 12)), min_samples=int(rng.integers(1, 6)),
                  allow_single_cluster=bool(seed % 3 == 0))
    ours = HDBSCAN(backend=backend, **params).fit(X)
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, gen_min_span_tree=True, **params).fit(X)
    pairs = set(zip(ours.labels_.tolist(), theirs.labels_.tolist()))
    if len(pairs) != len({a for a, _ in pairs}) or len(pairs) != len({b for _, b in pairs}):
        return  # a tie or near-tie decided the partition differently
    np.testing.assert_allclose(ours.relative_validity_, theirs.relative_validity_, rtol=1e-12, atol=1e-15)


def test_validity_errors():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="d value"):
        validity_index(np.zeros((10, 10)), np.zeros(10, int), metric="precomputed")
    with pytest.raises(ValueError, match="metric"):
        validity_index(X, np.zeros(10, int), metric="cosine")
    with pytest.raises(ValueError, match="labels has 3"):
        validity_index(X, np.zeros(3, int))
    with pytest.raises(AttributeError, match="not been fit"):
        HDBSCAN().relative_validity_
