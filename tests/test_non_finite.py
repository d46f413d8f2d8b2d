"""Rows holding NaN or Inf: refused by default, or left out as scikit-learn / hdbscan do.

``HDBSCAN(non_finite="label")`` against ``sklearn.cluster.HDBSCAN`` (labels -2 / -3,
probabilities 0 / NaN; scikit-learn's ``min_samples`` counts the point itself, so it gets
``min_samples + 1``) and ``non_finite="noise"`` against ``hdbscan.HDBSCAN`` (labels -1,
outlier score 1), on random blobs with random rows spoiled (hypothesis seeds). The finite
rows must be clustered exactly as if the others were not there, as each peer does (the
peers' clustering of the finite rows is not compared with medscore's here: on ties and
near-ties it can differ, see docs/hdbscan_users.md, and tests/test_prediction.py covers it).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscore import HDBSCAN

sklearn_cluster = pytest.importorskip("sklearn.cluster")
hdbscan = pytest.importorskip("hdbscan")


def spoiled(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(30, 150)), int(rng.integers(1, 5))
    centres = rng.normal(scale=5.0, size=(int(rng.integers(1, 4)), dim))
    X = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim))
    bad = rng.choice(n, size=int(rng.integers(1, 8)), replace=False)
    for row in bad:
        X[row, rng.integers(0, dim)] = rng.choice([np.nan, np.inf, -np.inf])
    params = dict(min_cluster_size=int(rng.integers(3, 10)), min_samples=int(rng.integers(1, 6)))
    return X, params


@settings(max_examples=25)
@given(seed=st.integers(0, 2**20))
def test_label_mode_equals_sklearn(seed):
    X, params = spoiled(seed)
    ours = HDBSCAN(non_finite="label", **params).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's FutureWarning about `copy`
        theirs = sklearn_cluster.HDBSCAN(min_cluster_size=params["min_cluster_size"],
                                         min_samples=params["min_samples"] + 1, copy=True).fit(X)
    finite = np.isfinite(X).all(axis=1)
    np.testing.assert_array_equal(ours.labels_[~finite], theirs.labels_[~finite])
    np.testing.assert_array_equal(ours.probabilities_[~finite], theirs.probabilities_[~finite])
    np.testing.assert_array_equal(ours.finite_index_, np.flatnonzero(finite))
    alone = HDBSCAN(**params).fit(X[finite])  # the finite rows are clustered as if alone
    np.testing.assert_array_equal(ours.labels_[finite], alone.labels_)
    np.testing.assert_array_equal(ours.probabilities_[finite], alone.probabilities_)
    np.testing.assert_array_equal(ours.condensed_tree_, alone.condensed_tree_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_alone = sklearn_cluster.HDBSCAN(min_cluster_size=params["min_cluster_size"],
                                              min_samples=params["min_samples"] + 1, copy=True).fit(X[finite])
    np.testing.assert_array_equal(theirs.labels_[finite], their_alone.labels_)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**20))
def test_noise_mode_equals_hdbscan(seed):
    X, params = spoiled(seed)
    ours = HDBSCAN(non_finite="noise", **params).fit(X)
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, **params).fit(X)
    finite = np.isfinite(X).all(axis=1)
    np.testing.assert_array_equal(ours.labels_[~finite], -1)
    np.testing.assert_array_equal(theirs.labels_[~finite], -1)
    np.testing.assert_array_equal(ours.probabilities_[~finite], theirs.probabilities_[~finite])
    np.testing.assert_array_equal(ours.outlier_scores_[~finite], theirs.outlier_scores_[~finite])
    np.testing.assert_array_equal(ours.core_distances_[~finite], np.inf)
    # Both leave the rows out: each clusters the finite rows as it would alone.
    alone = HDBSCAN(**params).fit(X[finite])
    np.testing.assert_array_equal(ours.labels_[finite], alone.labels_)
    np.testing.assert_array_equal(ours.probabilities_[finite], alone.probabilities_)
    np.testing.assert_array_equal(ours.outlier_scores_[finite], alone.outlier_scores_)
    their_alone = hdbscan.HDBSCAN(approx_min_span_tree=False, **params).fit(X[finite])
    np.testing.assert_array_equal(theirs.labels_[finite], their_alone.labels_)


def test_default_raises_and_names_the_options():
    X = np.random.default_rng(0).normal(size=(20, 2))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"first bad row is 4.*non_finite='label'"):
        HDBSCAN().fit(X)
    with pytest.raises(ValueError, match="non_finite"):
        HDBSCAN(non_finite="ignore").fit(X)
    with pytest.raises(ValueError, match="no finite row"):
        HDBSCAN(non_finite="label").fit(np.full((5, 2), np.inf))


def test_mixed_infinities_and_the_other_attributes():
    """A row with +Inf and -Inf is an Inf row here (-2); scikit-learn's rule sums the row
    (NaN) and says -3. Everything per row has N entries, the trees cover the finite rows."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 8])
    X[0] = [np.inf, -np.inf]
    X[1] = [np.nan, np.inf]
    X[2] = [1e308, 1e308]  # finite: clustered (scikit-learn's row sum overflows and says -2)
    model = HDBSCAN(min_cluster_size=5, non_finite="label", prediction_data=True).fit(X)
    assert model.labels_[:2].tolist() == [-2, -3]
    assert model.labels_[2] == -1 and 2 in model.finite_index_
    for attr in ("labels_", "probabilities_", "outlier_scores_", "core_distances_"):
        assert getattr(model, attr).shape == (80,)
    assert model.condensed_tree_["child"].max() < 2 * 78
    assert model.dbscan_clustering(1.0)[:2].tolist() == [-2, -3]
    kept = model.labels_[model.finite_index_]
    for k in range(kept.max() + 1):
        np.testing.assert_allclose(model.weighted_cluster_centroid(k),
                                   np.average(X[model.finite_index_][kept == k],
                                              weights=model.probabilities_[model.finite_index_][kept == k], axis=0))
