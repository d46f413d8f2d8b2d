"""Prediction, soft clustering and GLOSH on ``IncrementalHDBSCAN``'s live clustering.

After a random stream of inserts and removals (hypothesis seeds), ``approximate_predict``,
``approximate_predict_scores``, ``membership_vector``, ``all_points_membership_vectors`` and
``outlier_scores_`` of the stream must equal those of ``HDBSCAN(prediction_data=True)``
fitted on the live points (``minimum_spanning_tree_.data``), up to the naming of labels: the
stream predicts its stable labels and orders membership columns by them (so the rows of the
membership vectors are normalised in another order: equal to the last bits, rtol 1e-13).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscore import (HDBSCAN, IncrementalHDBSCAN, all_points_membership_vectors,
                      approximate_predict, membership_vector)
from medscore.prediction import approximate_predict_scores


def stream(seed):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 5))
    centres = rng.normal(scale=5.0, size=(int(rng.integers(1, 5)), dim))
    params = dict(min_cluster_size=int(rng.integers(3, 10)), min_samples=int(rng.integers(1, 6)))
    inc = IncrementalHDBSCAN(**params)
    for _ in range(int(rng.integers(2, 6))):
        m = int(rng.integers(10, 60))
        ids = inc.insert(centres[rng.integers(0, len(centres), m)] + rng.normal(size=(m, dim)))
        if rng.random() < 0.6:
            live = inc.ids_
            inc.remove(rng.choice(live, size=int(rng.integers(1, max(2, len(live) // 4))), replace=False))
    queries = np.concatenate([centres[rng.integers(0, len(centres), 20)] + rng.normal(size=(20, dim)),
                              rng.normal(scale=10.0, size=(5, dim)), inc.minimum_spanning_tree_.data[:5]])
    return inc, params, queries


@settings(max_examples=30)
@given(seed=st.integers(0, 2**20))
def test_live_predictions_equal_a_batch_fit(seed):
    inc, params, queries = stream(seed)
    points = inc.minimum_spanning_tree_.data
    batch = HDBSCAN(prediction_data=True, **params).fit(points)
    np.testing.assert_array_equal(inc.labels_ < 0, batch.labels_ < 0)
    names = np.unique(inc.labels_[inc.labels_ >= 0])
    to_stable = np.full(len(names), -1, np.int64)  # batch label -> stable label
    to_stable[batch.labels_[batch.labels_ >= 0]] = inc.labels_[inc.labels_ >= 0]
    assert sorted(to_stable.tolist()) == names.tolist()
    np.testing.assert_array_equal(inc.outlier_scores_, batch.outlier_scores_)
    if not len(names):
        with pytest.warns(UserWarning, match="predicted as noise"):
            labels, prob = approximate_predict(inc, queries)
        assert (labels == -1).all() and membership_vector(inc, queries).shape == (len(queries), 0)
        return

    labels, prob, nb = approximate_predict(inc, queries, return_connecting_points=True)
    b_labels, b_prob, b_nb = approximate_predict(batch, queries, return_connecting_points=True)
    np.testing.assert_array_equal(labels, np.where(b_labels >= 0, to_stable[np.maximum(b_labels, 0)], -1))
    np.testing.assert_array_equal(prob, b_prob)
    np.testing.assert_array_equal(nb, b_nb)
    np.testing.assert_array_equal(approximate_predict_scores(inc, queries),
                                  approximate_predict_scores(batch, queries))
    columns = np.searchsorted(names, to_stable)  # batch column k is stable column columns[k]
    # Columns in another order sum in another order when rows are normalised: last bits.
    np.testing.assert_allclose(membership_vector(inc, queries)[:, columns],
                               membership_vector(batch, queries), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(all_points_membership_vectors(inc)[:, columns],
                               all_points_membership_vectors(batch), rtol=1e-13, atol=1e-300)


def test_live_prediction_data_follows_updates():
    rng = np.random.default_rng(0)
    inc = IncrementalHDBSCAN(min_cluster_size=5, min_samples=3)
    inc.insert(rng.normal(size=(60, 2)))
    first = approximate_predict(inc, np.array([[20.0, 20.0]]))
    assert first[0].tolist() == [-1] or first[0].tolist() == [0]
    inc.insert(rng.normal(size=(60, 2)) + 20)
    labels, prob = approximate_predict(inc, np.array([[20.0, 20.0], [0.0, 0.0]]))
    assert labels[0] >= 0 and labels[1] >= 0 and labels[0] != labels[1]
    again = approximate_predict(inc, np.array([[20.0, 20.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(again[0], labels)


def test_empty_stream_refuses():
    with pytest.raises(ValueError, match="holds no points"):
        approximate_predict(IncrementalHDBSCAN(), np.zeros((1, 2)))
