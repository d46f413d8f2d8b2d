"""Tree objects: the arrays of before, hdbscan's conversions, pickling and plots (PNG files)."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN, IncrementalHDBSCAN
from medscore._dtypes import CONDENSED
from medscore.trees import CondensedTree, MinimumSpanningTree, SingleLinkageTree

hdbscan = pytest.importorskip("hdbscan")


@pytest.fixture(scope="module")
def fitted():
    load_backend("cpp")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 6,
                        rng.normal(size=(40, 3)) + [0, 8, 0]])
    model = HDBSCAN(min_cluster_size=8, min_samples=4).fit(X)
    theirs = hdbscan.HDBSCAN(min_cluster_size=8, min_samples=4, approx_min_span_tree=False,
                             gen_min_span_tree=True).fit(X)
    return X, model, theirs


def test_trees_are_the_arrays_of_before(fitted):
    X, model, _ = fitted
    n = len(X)
    r = model._result
    tree = model.condensed_tree_
    assert isinstance(tree, CondensedTree) and isinstance(tree, np.ndarray)
    assert tree.dtype == CONDENSED
    np.testing.assert_array_equal(tree, r.condensed_tree)
    assert type(tree["parent"]) is np.ndarray and type(tree[:3]) is np.ndarray
    mst = model.minimum_spanning_tree_
    assert isinstance(mst, MinimumSpanningTree) and mst.shape == (n - 1, 3)
    np.testing.assert_array_equal(mst[:, 2], r.minimum_spanning_tree["weight"])
    np.testing.assert_array_equal(mst[:, 0], r.minimum_spanning_tree["u"])
    assert type(mst[:, 2]) is np.ndarray and type(mst.max()) is np.float64
    assert type(mst * 2) is np.ndarray
    slt = model.single_linkage_tree_
    assert isinstance(slt, SingleLinkageTree) and slt.shape == (n - 1, 4)
    np.testing.assert_array_equal(slt[:, 2], r.single_linkage_tree["distance"])
    for t in (tree, mst, slt):
        plain = t.to_numpy()
        assert type(plain) is np.ndarray
        np.testing.assert_array_equal(plain, t)
        plain[...] = 0  # a copy
        assert not np.array_equal(plain, t)


def test_to_numpy_matches_hdbscan(fitted):
    X, model, theirs = fitted
    n = len(X)
    np.testing.assert_array_equal(ref.canonical_condensed(model.condensed_tree_.to_numpy(), n),
                                  ref.canonical_condensed(theirs.condensed_tree_.to_numpy(), n))
    np.testing.assert_allclose(model.minimum_spanning_tree_.to_numpy()[:, 2],
                               np.sort(theirs.minimum_spanning_tree_.to_numpy()[:, 2]), rtol=1e-12)
    np.testing.assert_allclose(model.single_linkage_tree_.to_numpy()[:, 2],
                               theirs.single_linkage_tree_.to_numpy()[:, 2], rtol=1e-12)
    # Merge sizes agree where no other merge has the same height (mutual-reachability
    # weights tie often; the binary order of tied merges is arbitrary in both libraries).
    heights = model.single_linkage_tree_[:, 2]
    values, counts = np.unique(heights, return_counts=True)
    lone = np.isin(heights, values[counts == 1])
    assert lone.sum() > len(heights) // 2
    np.testing.assert_array_equal(model.single_linkage_tree_.to_numpy()[lone, 3],
                                  theirs.single_linkage_tree_.to_numpy()[lone, 3])


def test_selected_clusters_label_the_points(fitted):
    X, model, _ = fitted
    tree, n = model.condensed_tree_, len(X)
    assert len(tree.selected) == model.labels_.max() + 1
    rows = tree[tree["child"] < n]
    for label, cluster in enumerate(tree.selected.tolist()):
        members = np.flatnonzero(model.labels_ == label)
        under = {cluster}
        for p, c in zip(tree["parent"].tolist(), tree["child"].tolist()):
            if p in under and c >= n:
                under.add(c)
        np.testing.assert_array_equal(np.sort(rows["child"][np.isin(rows["parent"], list(under))]),
                                      members)


def test_to_pandas_matches_hdbscan(fitted):
    pytest.importorskip("pandas")
    X, model, theirs = fitted
    for ours, their in ((model.condensed_tree_, theirs.condensed_tree_),
                        (model.single_linkage_tree_, theirs.single_linkage_tree_),
                        (model.minimum_spanning_tree_, theirs.minimum_spanning_tree_)):
        a, b = ours.to_pandas(), their.to_pandas()
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
    frame = model.condensed_tree_.to_pandas()
    np.testing.assert_array_equal(frame["lambda_val"].to_numpy(), model.condensed_tree_["lambda_val"])


def test_to_networkx(fitted):
    nx = pytest.importorskip("networkx")
    X, model, _ = fitted
    n = len(X)
    g = model.condensed_tree_.to_networkx()
    assert nx.is_tree(g.to_undirected()) and g.number_of_edges() == len(model.condensed_tree_)
    assert g.nodes[0]["size"] == 1
    mst = model.minimum_spanning_tree_.to_networkx()
    assert nx.is_tree(mst) and mst.number_of_nodes() == n
    assert mst.nodes[3]["data"] == tuple(X[3])
    total = sum(w for _, _, w in mst.edges(data="weight"))
    assert total == pytest.approx(model.minimum_spanning_tree_[:, 2].sum(), rel=1e-12)
    slt = model.single_linkage_tree_.to_networkx()
    assert slt.number_of_nodes() == 2 * n - 1 and nx.is_tree(slt.to_undirected())


def test_pickle_keeps_the_extras(fitted):
    _, model, _ = fitted
    again = pickle.loads(pickle.dumps(model))
    assert isinstance(again.condensed_tree_, CondensedTree)
    np.testing.assert_array_equal(again.condensed_tree_.selected, model.condensed_tree_.selected)
    np.testing.assert_array_equal(again.minimum_spanning_tree_.data, model.minimum_spanning_tree_.data)


def test_plots_write_png(fitted, tmp_path):
    """MEDSCORE_PLOT_DIR=docs/images writes the figures shown in docs/hdbscan_users.md."""
    tmp_path = Path(os.environ.get("MEDSCORE_PLOT_DIR", tmp_path))
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, model, _ = fitted
    drawings = {
        "condensed_tree.png": lambda ax: model.condensed_tree_.plot(
            axis=ax, select_clusters=True, label_clusters=True),
        "condensed_tree_log.png": lambda ax: model.condensed_tree_.plot(axis=ax, log_size=True,
                                                                         colorbar=False),
        "single_linkage_tree.png": lambda ax: model.single_linkage_tree_.plot(
            axis=ax, truncate_mode="lastp", p=20),
        "minimum_spanning_tree.png": lambda ax: model.minimum_spanning_tree_.plot(axis=ax),
    }
    for name, draw in drawings.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        assert draw(ax) is ax
        fig.savefig(tmp_path / name, dpi=80, bbox_inches="tight")
        plt.close(fig)
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    # The icicle plot has one bar segment per group of points leaving a cluster.
    fig, ax = plt.subplots()
    model.condensed_tree_.plot(axis=ax, colorbar=False, max_rectangles_per_icicle=5)
    bars = ax.collections[0]
    n_clusters = len(np.unique(model.condensed_tree_["parent"]))
    assert n_clusters <= len(bars.get_paths()) <= 5 * n_clusters
    plt.close(fig)


def test_incremental_trees_and_scores():
    load_backend("cpp")
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 7])
    inc = IncrementalHDBSCAN(min_cluster_size=6, knn="exact")
    inc.insert(X[:50])
    inc.insert(X[50:])
    batch = HDBSCAN(min_cluster_size=6).fit(X)
    assert isinstance(inc.condensed_tree_, CondensedTree)
    assert isinstance(inc.minimum_spanning_tree_, MinimumSpanningTree)
    np.testing.assert_array_equal(inc.minimum_spanning_tree_.data, X)
    np.testing.assert_array_equal(inc.outlier_scores_, batch.outlier_scores_)
    inc.remove(inc.ids_[:10])
    np.testing.assert_array_equal(inc.outlier_scores_,
                                  HDBSCAN(min_cluster_size=6).fit(X[10:]).outlier_scores_)
