"""The trees of a fit as objects: ``condensed_tree_``, ``single_linkage_tree_``, ``minimum_spanning_tree_``.

Each is an ``ndarray`` subclass holding exactly the array medscore returned before these
classes existed (the ``CONDENSED`` structured array; the float64 ``[N-1, 4]`` linkage in
scipy's encoding; the float64 ``[N-1, 3]`` MST edges ``u, v, weight`` sorted by weight), so
code that indexed, compared or sliced them keeps working. On top they offer the methods of
the ``hdbscan`` library's tree objects: ``to_numpy()``, ``to_pandas()``, ``to_networkx()``
and ``plot()``. Slices, fields and arithmetic give plain ndarrays (a column of a tree is not
a tree). pandas, networkx, matplotlib and scipy are imported only by the methods that need
them, with a message naming what to install.

The tree helpers at the end (cluster parents, births, deaths, the selected clusters) are
shared with :mod:`medscore.prediction`. Cluster ids of a condensed tree of ``N`` points are
``N .. N + K - 1`` with the root ``N`` and every child's id above its parent's (docs/SPEC.md,
stage 4), so per-cluster arrays are indexed by ``id - N``.
"""
from __future__ import annotations

import importlib

import numpy as np

from ._dtypes import CONDENSED


def _optional(module: str, extra: str, what: str):
    """Import an optional dependency or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs {module.split('.')[0]}: pip install {extra}") from exc


class _TreeArray(np.ndarray):
    """An ndarray with a few named extras (``_meta``) that survive views and pickling."""

    def __new__(cls, array, **meta):
        obj = np.asarray(array).view(cls)
        obj._meta = meta
        return obj

    def __array_finalize__(self, obj):
        self._meta = getattr(obj, "_meta", {})

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return out.view(np.ndarray) if isinstance(out, np.ndarray) else out

    def __array_wrap__(self, out, context=None, return_scalar=False):
        # Results of ufuncs and reductions are numbers, not trees.
        out = np.asarray(out).view(np.ndarray)
        return out[()] if return_scalar else out

    def __reduce__(self):
        return (_rebuild, (type(self), self.to_numpy(), self._meta))

    def to_numpy(self) -> np.ndarray:
        """The tree as a plain ndarray (a copy)."""
        return np.array(self.view(np.ndarray), copy=True)


def _rebuild(cls, array, meta):
    return cls(array, **meta)


class CondensedTree(_TreeArray):
    """The condensed cluster tree: a ``CONDENSED`` structured array [R] with methods.

    Fields ``parent``, ``child``, ``lambda_val``, ``child_size`` as the ``hdbscan`` library
    exports them; ``selected`` (int64 [K], the cluster ids of labels ``0 .. K-1``) is kept
    for ``plot(select_clusters=True)``.
    """

    def __new__(cls, array, selected=None):
        sel = np.empty(0, np.int64) if selected is None else np.asarray(selected, np.int64)
        return super().__new__(cls, np.asarray(array, CONDENSED), selected=sel)

    @property
    def selected(self) -> np.ndarray:
        """int64 [K]: the condensed-tree id of the cluster labelled ``k``, for each k."""
        return self._meta["selected"]

    def to_pandas(self):
        """A DataFrame with columns parent, child, lambda_val, child_size (one row per row)."""
        pd = _optional("pandas", "pandas", "to_pandas()")
        array = self.view(np.ndarray)
        return pd.DataFrame({name: array[name] for name in CONDENSED.names})

    def to_networkx(self):
        """A ``networkx.DiGraph``: an edge parent -> child per row with ``weight`` = lambda_val,
        and each child node's ``size`` attribute = child_size."""
        nx = _optional("networkx", "networkx", "to_networkx()")
        graph = nx.DiGraph()
        array = self.view(np.ndarray)
        for parent, child, lam, size in array.tolist():
            graph.add_edge(parent, child, weight=lam)
            graph.nodes[child]["size"] = size
        return graph

    def plot(self, leaf_separation=1.0, cmap="viridis", select_clusters=False,
             label_clusters=False, axis=None, colorbar=True, log_size=False,
             max_rectangles_per_icicle=20):
        """Icicle plot: each cluster a bar whose width is its number of points at each lambda.

        The vertical axis is lambda (1 / distance), growing downwards; a bar narrows as
        points fall out of its cluster and is coloured by that number (or its log). Child
        clusters hang from a horizontal line at their parent's split. With
        ``select_clusters`` the selected clusters are circled, with ``label_clusters``
        annotated with their label. Needs matplotlib.

        Returns
        -------
        matplotlib.axes.Axes
        """
        plt = _optional("matplotlib.pyplot", "matplotlib", "plot()")
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Ellipse, Rectangle

        ax = axis if axis is not None else plt.gca()
        layout = _icicle_layout(self.view(np.ndarray), leaf_separation, max_rectangles_per_icicle)
        sizes = np.log(layout.widths) if log_size else layout.widths
        bars = PatchCollection([Rectangle((x - w / 2, y), w, h) for x, y, w, h in layout.rects],
                               cmap=cmap)
        bars.set_array(np.asarray(sizes, np.float64))
        ax.add_collection(bars)
        for x0, x1, y in layout.hlines:
            ax.plot([x0, x1], [y, y], color="black", linewidth=1)
        if select_clusters:
            for label, cluster in enumerate(self.selected.tolist()):
                x, top, bottom, width = layout.extent[cluster]
                ax.add_patch(Ellipse((x, (top + bottom) / 2), width * 1.2, (bottom - top) * 1.15,
                                     fill=False, edgecolor="red", linewidth=2))
                if label_clusters:
                    ax.annotate(str(label), (x, top), ha="center", va="bottom", color="red")
        ax.set_xlim(layout.xlim)
        ax.set_ylim(layout.ylim[1], layout.ylim[0])
        ax.set_xticks([])
        ax.set_ylabel("$\\lambda$ value")
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
        if colorbar:
            bar = plt.colorbar(bars, ax=ax)
            bar.set_label("log(Number of points)" if log_size else "Number of points")
        return ax


class SingleLinkageTree(_TreeArray):
    """The single-linkage tree: float64 [N-1, 4] rows (left, right, distance, size), scipy's
    encoding, row ``i`` being node ``N + i``."""

    def __new__(cls, array):
        return super().__new__(cls, np.asarray(array, np.float64).reshape(-1, 4))

    def to_pandas(self):
        """A DataFrame with columns parent, left_child, right_child, distance, size."""
        pd = _optional("pandas", "pandas", "to_pandas()")
        array = self.view(np.ndarray)
        n = array.shape[0] + 1
        return pd.DataFrame({"parent": np.arange(n, 2 * n - 1, dtype=np.int64),
                             "left_child": array[:, 0].astype(np.int64),
                             "right_child": array[:, 1].astype(np.int64),
                             "distance": array[:, 2], "size": array[:, 3].astype(np.int64)})

    def to_networkx(self):
        """A ``networkx.DiGraph``: node ``N + i`` -> its two children, ``weight`` = distance."""
        nx = _optional("networkx", "networkx", "to_networkx()")
        graph = nx.DiGraph()
        array = self.view(np.ndarray)
        n = array.shape[0] + 1
        for i, (left, right, distance, _) in enumerate(array.tolist()):
            graph.add_edge(n + i, int(left), weight=distance)
            graph.add_edge(n + i, int(right), weight=distance)
        return graph

    def get_clusters(self, cut_distance, min_cluster_size=5) -> np.ndarray:
        """The flat clustering of a cut through the tree at ``cut_distance`` (``hdbscan``'s).

        Points joined by merges of distance ``< cut_distance`` (strictly) form a component;
        components of at least ``min_cluster_size`` points are clusters, the others noise.
        Run on the mutual-reachability tree this is DBSCAN* at ``eps = cut_distance``. The
        partition is the threshold graph's, so it does not depend on how tied merges are
        encoded. Labels ``0, 1, ...`` follow the smallest point index of each cluster (the
        library numbers by its union-find roots; same clusters, other numbers).

        Returns
        -------
        int64 ndarray [N], -1 for noise
        """
        array = self.view(np.ndarray)
        n = array.shape[0] + 1
        cut = float(cut_distance)
        up = np.arange(2 * n - 1, dtype=np.int64)  # each node's highest ancestor below the cut
        parent = np.arange(2 * n - 1, dtype=np.int64)
        joined = array[:, 2] < cut
        for side in (0, 1):
            children = array[joined, side].astype(np.int64)
            parent[children] = n + np.flatnonzero(joined)
        up[:] = parent
        while True:
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            up = nxt
        top = up[:n]
        _, first, inverse, counts = np.unique(top, return_index=True, return_inverse=True,
                                              return_counts=True)
        big = counts >= int(min_cluster_size)
        rank = np.full(first.size, -1, np.int64)
        order = np.argsort(first[big], kind="stable")  # by smallest point index
        rank[np.flatnonzero(big)[order]] = np.arange(order.size)
        return rank[inverse.reshape(-1)]

    def plot(self, axis=None, truncate_mode=None, p=0, color_threshold=None, **dendrogram_kw):
        """Dendrogram of the tree with scipy (``truncate_mode`` and ``p`` as scipy's).

        Returns
        -------
        matplotlib.axes.Axes
        """
        plt = _optional("matplotlib.pyplot", "matplotlib", "plot()")
        hierarchy = _optional("scipy.cluster.hierarchy", "scipy", "SingleLinkageTree.plot()")
        ax = axis if axis is not None else plt.gca()
        linkage = self.to_numpy()
        # scipy refuses infinite heights (points farther apart than float64 can say).
        finite = np.isfinite(linkage[:, 2])
        if not finite.all():
            top = linkage[finite, 2].max() if finite.any() else 1.0
            linkage[~finite, 2] = 2 * top if top > 0 else 1.0
        hierarchy.dendrogram(linkage, ax=ax, truncate_mode=truncate_mode, p=p,
                             color_threshold=color_threshold, no_labels=True, **dendrogram_kw)
        ax.set_ylabel("distance")
        return ax


class MinimumSpanningTree(_TreeArray):
    """The minimum spanning tree of the mutual-reachability graph: float64 [N-1, 3] rows
    (u, v, weight) sorted by weight; ``data`` (float64 [N, D]) is the fitted points, used by
    ``plot()`` and ``to_networkx()``."""

    def __new__(cls, array, data=None):
        return super().__new__(cls, np.asarray(array, np.float64).reshape(-1, 3), data=data)

    @property
    def data(self):
        """float64 [N, D], the points the tree spans (None if not kept)."""
        return self._meta.get("data")

    def to_pandas(self):
        """A DataFrame with columns from, to, distance."""
        pd = _optional("pandas", "pandas", "to_pandas()")
        array = self.view(np.ndarray)
        return pd.DataFrame({"from": array[:, 0].astype(np.int64),
                             "to": array[:, 1].astype(np.int64), "distance": array[:, 2]})

    def to_networkx(self):
        """A ``networkx.Graph``: one edge per row with ``weight``; node attribute ``data``
        (the point's coordinates as a tuple) when the points were kept."""
        nx = _optional("networkx", "networkx", "to_networkx()")
        graph = nx.Graph()
        if self.data is not None:
            graph.add_nodes_from((i, {"data": tuple(row)}) for i, row in enumerate(self.data.tolist()))
        for u, v, weight in self.view(np.ndarray).tolist():
            graph.add_edge(int(u), int(v), weight=weight)
        return graph

    def plot(self, axis=None, node_size=40, node_color="k", node_alpha=0.8, edge_alpha=0.5,
             edge_cmap="viridis_r", edge_linewidth=2, vary_line_width=True, colorbar=True):
        """The tree drawn over the points, projected on their first two principal axes.

        Edges are coloured by mutual-reachability weight; with ``vary_line_width`` heavier
        edges are drawn thinner. Needs matplotlib and the kept points.

        Returns
        -------
        matplotlib.axes.Axes
        """
        plt = _optional("matplotlib.pyplot", "matplotlib", "plot()")
        from matplotlib.collections import LineCollection

        if self.data is None:
            raise ValueError("this tree was built without its points; nothing to plot them at")
        ax = axis if axis is not None else plt.gca()
        xy = _project_2d(self.data)
        edges = self.view(np.ndarray)
        u, v = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
        weights = edges[:, 2]
        finite = np.isfinite(weights)
        widths = edge_linewidth
        if vary_line_width and finite.any():
            top = weights[finite].max()
            scaled = np.where(finite, weights, top) / (top if top > 0 else 1.0)
            widths = edge_linewidth * (1.0 - 0.9 * scaled)
        lines = LineCollection(np.stack([xy[u], xy[v]], axis=1), cmap=edge_cmap,
                               alpha=edge_alpha, linewidths=widths)
        lines.set_array(np.where(finite, weights, np.nan))
        ax.add_collection(lines)
        ax.scatter(xy[:, 0], xy[:, 1], s=node_size, c=node_color, alpha=node_alpha, zorder=2)
        ax.autoscale_view()
        ax.set_xticks([])
        ax.set_yticks([])
        if colorbar:
            plt.colorbar(lines, ax=ax).set_label("Mutual reachability distance")
        return ax


def _project_2d(data: np.ndarray) -> np.ndarray:
    """float64 [N, 2]: the points on their first two principal axes (zeros where D < 2)."""
    centred = data - data.mean(axis=0)
    if data.shape[1] <= 2:
        out = np.zeros((data.shape[0], 2))
        out[:, : data.shape[1]] = centred
        return out
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


class _Icicles:
    """Geometry of an icicle plot (see :func:`_icicle_layout`)."""

    def __init__(self):
        self.rects, self.widths, self.hlines, self.extent = [], [], [], {}
        self.xlim = self.ylim = (0.0, 1.0)


def _icicle_layout(tree: np.ndarray, leaf_separation: float, max_rects: int) -> _Icicles:
    """Bars, joins and extents of every cluster of a condensed tree.

    Leaves of the cluster tree sit ``leaf_separation`` apart in depth-first order; a parent
    is centred over its children. A cluster's bar runs from its birth lambda to its largest
    row lambda, split into at most ``max_rects`` rectangles whose width is the number of
    points still in the cluster (infinite lambdas are drawn at the largest finite one).
    """
    out = _Icicles()
    if tree.size == 0:
        return out
    n = int(tree["parent"].min())
    info = cluster_info(tree, n)
    finite = tree["lambda_val"][np.isfinite(tree["lambda_val"])]
    cap = float(finite.max()) if finite.size else 1.0
    lam = np.minimum(tree["lambda_val"], cap)
    kids = [[] for _ in range(info.n_clusters)]
    for c in range(1, info.n_clusters):
        kids[info.parent[c] - n].append(c)
    x = np.zeros(info.n_clusters)
    next_x = [0.0]

    # Leaves side by side, each as wide as its cluster, ``leaf_separation`` twentieths of
    # the data set apart.
    gap = leaf_separation * float(info.size[0]) / 20.0

    def place(c):  # depth-first; the cluster tree is shallow (depth <= N / min_cluster_size)
        if not kids[c]:
            x[c] = next_x[0] + info.size[c] / 2.0
            next_x[0] += float(info.size[c]) + gap
            return
        for k in kids[c]:
            place(k)
        left = min(x[k] - info.size[k] / 2.0 for k in kids[c])
        right = max(x[k] + info.size[k] / 2.0 for k in kids[c])
        x[c] = (left + right) / 2.0  # centred over the span of its children

    place(0)
    rows_of = np.argsort(tree["parent"], kind="stable")
    bounds = np.searchsorted(tree["parent"][rows_of], np.arange(n, n + info.n_clusters + 1))
    for c in range(info.n_clusters):
        rows = rows_of[bounds[c]:bounds[c + 1]]
        order = rows[np.argsort(lam[rows], kind="stable")]
        birth = min(float(info.birth[c]), cap)
        leaving = np.concatenate([[0], np.cumsum(tree["child_size"][order])])
        size = int(leaving[-1])
        steps = np.linspace(0, len(order), min(max_rects, len(order)) + 1).astype(int)
        top = birth
        for a, b in zip(steps[:-1], steps[1:]):
            bottom = float(lam[order[b - 1]])
            width = size - int(leaving[a])
            out.rects.append((x[c], top, width * 1.0, max(bottom - top, 0.0)))
            out.widths.append(max(width, 1))
            top = bottom
        out.extent[n + c] = (x[c], birth, top, float(size))
        if kids[c]:
            out.hlines.append((min(x[k] for k in kids[c]), max(x[k] for k in kids[c]),
                               float(min(info.birth[kids[c][0]], cap))))
    half = max(float(info.size[0]), 1.0) / 2.0
    out.xlim = (min(0.0, float(x[0]) - half) - gap, max(next_x[0], float(x[0]) + half))
    out.ylim = (0.0, cap * 1.05 if cap > 0 else 1.0)
    return out


# -- tree helpers shared with medscore.prediction -------------------------------------------


class ClusterInfo:
    """Per-cluster arrays of a condensed tree of ``n`` points, indexed by ``id - n``.

    Attributes
    ----------
    root : int, the root's id (= n, the number of points)
    n_clusters : int, K (the root included)
    parent : int64 [K], the parent's id (-1 for the root)
    birth : float64 [K], lambda at which the cluster appears (0 for the root)
    death : float64 [K], largest lambda among the cluster's own rows (0 if it has none)
    size : int64 [K], number of points in the cluster
    depth : int64 [K], 0 for the root
    """

    def __init__(self, root, n_clusters, parent, birth, death, size, depth):
        self.root, self.n_clusters, self.parent, self.birth = root, n_clusters, parent, birth
        self.death, self.size, self.depth = death, size, depth


def cluster_info(tree: np.ndarray, n: int) -> ClusterInfo:
    """Build :class:`ClusterInfo` of a ``CONDENSED`` tree of ``n`` points."""
    if tree.size == 0:  # one point: the root alone
        return ClusterInfo(n, 1, np.full(1, -1, np.int64), np.zeros(1), np.zeros(1),
                           np.full(1, n, np.int64), np.zeros(1, np.int64))
    k = int(max(tree["parent"].max(), tree["child"].max(), n)) - n + 1
    parent = np.full(k, -1, np.int64)
    birth = np.zeros(k)
    size = np.zeros(k, np.int64)
    clusters = tree["child"] >= n
    parent[tree["child"][clusters] - n] = tree["parent"][clusters]
    birth[tree["child"][clusters] - n] = tree["lambda_val"][clusters]
    size[tree["child"][clusters] - n] = tree["child_size"][clusters]
    size[0] = int(tree["child_size"][tree["parent"] == n].sum())
    death = np.zeros(k)
    np.maximum.at(death, tree["parent"] - n, tree["lambda_val"])
    depth = np.zeros(k, np.int64)
    for c in range(1, k):  # parents have smaller ids, so their depth is known already
        depth[c] = depth[parent[c] - n] + 1
    return ClusterInfo(n, k, parent, birth, death, size, depth)


def lowest_common_ancestor(info: ClusterInfo, n: int, a: int, b: int) -> int:
    """The deepest cluster containing clusters ``a`` and ``b`` (ids)."""
    while a != b:
        if info.depth[a - n] >= info.depth[b - n]:
            a = int(info.parent[a - n])
        else:
            b = int(info.parent[b - n])
    return a


def selected_clusters(tree: np.ndarray, n: int, labels: np.ndarray,
                      probabilities: np.ndarray) -> np.ndarray:
    """The condensed-tree ids of the clusters labelled ``0 .. K-1`` by a fit.

    The backends return labels, not the selection; the selection is recovered from them.
    Label ``k``'s cluster holds every point labelled ``k``, and a cluster splits only into
    two or more clusters, so it is the lowest common ancestor of the clusters those points
    fall out of. One case is ambiguous: the root as the only selection labels only the
    points whose lambda passes a threshold (docs/SPEC.md, stage 5), and these may all lie
    in one sub-cluster; the probabilities, computed from the selected cluster's death,
    decide between the root and that sub-cluster.

    Returns
    -------
    int64 ndarray [K]
    """
    n_labels = int(labels.max()) + 1 if labels.size else 0
    if n_labels == 0 or tree.size == 0:
        return np.empty(0, np.int64)
    info = cluster_info(tree, n)
    points = tree["child"] < n
    point_parent = np.empty(n, np.int64)
    point_parent[tree["child"][points]] = tree["parent"][points]
    point_lambda = np.empty(n)
    point_lambda[tree["child"][points]] = tree["lambda_val"][points]
    out = np.empty(n_labels, np.int64)
    labelled = np.flatnonzero(labels >= 0)
    by_label = labelled[np.argsort(labels[labelled], kind="stable")]
    starts = np.searchsorted(labels[by_label], np.arange(n_labels + 1))
    for label in range(n_labels):
        found = np.unique(point_parent[by_label[starts[label]:starts[label + 1]]]).tolist()
        lca = found[0]
        for c in found[1:]:
            lca = lowest_common_ancestor(info, n, lca, c)
        out[label] = lca
    if n_labels == 1 and out[0] != n:
        members = labels == 0
        death = info.death[0]
        if death > 0:
            lam = point_lambda[members]
            as_root = np.where(np.isfinite(lam), np.minimum(lam, death) / death, 1.0)
            if np.array_equal(as_root, probabilities[members]) and not _probabilities_of(
                    info, n, int(out[0]), lam, probabilities[members]):
                out[0] = n
    return out


def _probabilities_of(info: ClusterInfo, n: int, cluster: int, lam, expected) -> bool:
    """Whether points of lambdas ``lam`` in ``cluster`` have probabilities ``expected``."""
    death = info.death[cluster - n]
    if death == 0:
        return bool((expected == 1.0).all())
    got = np.where(np.isfinite(lam), np.minimum(lam, death) / death, 1.0)
    return np.array_equal(got, expected)
