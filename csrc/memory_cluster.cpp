// The keyed memory's clustering of one key after its MST (see memory_cluster.hpp).
#include "memory_cluster.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medscore/core_distance.hpp"
#include "medscore/linkage.hpp"
#include "medscore/memory.hpp"
#include "medscore/ordered_sum.hpp"
#include "medscore/union_find.hpp"

namespace medscore {
namespace memory_detail {

Clustering single_point() {
    Clustering c;
    c.labels = {-1};
    c.noise = 1;
    return c;
}

MEDSCORE_TLS_ACCESSOR StageWorkspace& stage_workspace() {
    thread_local StageWorkspace w;
    return w;
}

namespace {

/// single_linkage (linkage.cpp, docs/SPEC.md stage 3) of a sorted spanning tree on n >= 2
/// points into w.linkage, with the workspace's disjoint sets: the same rows (a row joins the
/// nodes standing for the two sets, whatever the sets' internal roots), no allocation once
/// the buffers have grown. The tree comes from this memory, so only its invariants are
/// checked (std::logic_error).
void linkage_into(const std::vector<MstEdge>& mst, int64_t n, StageWorkspace& w) {
    if (static_cast<int64_t>(mst.size()) != n - 1) throw std::logic_error("linkage_into: the tree has the wrong size");
    w.set_parent.resize(static_cast<size_t>(n));
    w.set_size.assign(static_cast<size_t>(n), 1);
    w.node_of_root.resize(static_cast<size_t>(n));
    w.linkage.resize(static_cast<size_t>(n - 1));
    int64_t* parent = w.set_parent.data();
    int64_t* size = w.set_size.data();
    int64_t* node_of_root = w.node_of_root.data();
    for (int64_t v = 0; v < n; ++v) { parent[v] = v; node_of_root[v] = v; }
    for (int64_t i = 0; i < n - 1; ++i) {
        const MstEdge& e = mst[i];
        if (i > 0 && e.weight < mst[i - 1].weight) throw std::logic_error("linkage_into: the tree is not sorted");
        const int64_t ru = find_root(parent, e.u), rv = find_root(parent, e.v);
        if (ru == rv) throw std::logic_error("linkage_into: the tree has a cycle");
        w.linkage[i] = LinkageRow{node_of_root[ru], node_of_root[rv], e.weight, size[ru] + size[rv]};
        const int64_t root = unite_roots(parent, size, ru, rv);
        node_of_root[root] = n + i;
    }
}

/// Stages 4 and 5 of docs/SPEC.md (condense, EOM selection without epsilon, no single
/// cluster) fused for the labels alone, on w.linkage (n >= 2 points), into w.point_cluster
/// then `labels` (-1 noise, selected clusters 0..K-1 in discovery order; the caller renumbers
/// them by earliest member). It walks the same condensed tree as condense_tree: the same
/// clusters, parents, births and rows, so the same stabilities (each a sum in ascending order
/// of its terms) and the same EOM choices. What it skips cannot change the partition: the
/// children of an n-ary merge are not ordered by their smallest point (that order only
/// numbers the clusters, and a cluster is still discovered after its parent), the points of
/// a subtree are not sorted, and neither probabilities nor persistence are computed.
void eom_labels(int64_t n, int64_t min_cluster_size, StageWorkspace& w, std::vector<int64_t>& labels) {
    const LinkageRow* rows = w.linkage.data();
    auto is_leaf = [n](int64_t x) { return x < n; };
    auto size_of = [&](int64_t x) { return is_leaf(x) ? int64_t{1} : rows[x - n].size; };
    auto lambda_of = [](double d) { return d > 0.0 ? 1.0 / d : std::numeric_limits<double>::infinity(); };
    w.cluster_parent.assign(1, -1);
    w.birth.assign(1, 0.0);
    w.term_start.clear();
    w.kid_end.clear();
    w.terms.clear();
    w.point_cluster.resize(static_cast<size_t>(n));
    w.queue.assign({2 * n - 2, 0});  // (node, cluster) pairs, breadth first
    // Appends a term (lam - birth) * 1 to cluster c for every point under node y.
    auto emit_points = [&](int64_t y, int64_t c, double term) {
        if (is_leaf(y)) {  // the usual case: one point falls out
            w.point_cluster[y] = c;
            w.terms.push_back(term);
            return;
        }
        w.stack.assign(1, y);
        while (!w.stack.empty()) {
            const int64_t z = w.stack.back();
            w.stack.pop_back();
            if (is_leaf(z)) {
                w.point_cluster[z] = c;
                w.terms.push_back(term);
            } else {
                w.stack.push_back(rows[z - n].left);
                w.stack.push_back(rows[z - n].right);
            }
        }
    };
    for (size_t head = 0; head < w.queue.size(); head += 2) {
        int64_t x = w.queue[head];
        const int64_t c = w.queue[head + 1];
        w.term_start.push_back(static_cast<int64_t>(w.terms.size()));  // clusters come off the queue in id order
        for (;;) {
            const double h = rows[x - n].distance, lam = lambda_of(h), term = lam - w.birth[c];
            // The children of x under the threshold hierarchy: equal heights are one merge.
            w.children.clear();
            const int64_t left = rows[x - n].left, right = rows[x - n].right;
            auto same_height = [&](int64_t y) { return !is_leaf(y) && rows[y - n].distance == h; };
            if (!same_height(left) && !same_height(right)) {  // the usual binary merge
                w.children.push_back(left);
                w.children.push_back(right);
            } else {
                w.stack.assign({right, left});
            }
            while (!w.stack.empty()) {
                const int64_t y = w.stack.back();
                w.stack.pop_back();
                if (!is_leaf(y) && rows[y - n].distance == h) {
                    w.stack.push_back(rows[y - n].right);
                    w.stack.push_back(rows[y - n].left);
                } else {
                    w.children.push_back(y);
                }
            }
            w.big.clear();
            for (const int64_t y : w.children) {
                if (size_of(y) >= min_cluster_size) w.big.push_back(y);
            }
            if (w.big.size() >= 2) {
                for (const int64_t y : w.children) {
                    if (size_of(y) < min_cluster_size) {
                        emit_points(y, c, term);
                        continue;
                    }
                    w.terms.push_back(term * static_cast<double>(size_of(y)));
                    w.queue.push_back(y);
                    w.queue.push_back(static_cast<int64_t>(w.cluster_parent.size()));
                    w.cluster_parent.push_back(c);
                    w.birth.push_back(lam);
                }
                break;
            }
            for (const int64_t y : w.children) {
                if (w.big.empty() || y != w.big[0]) emit_points(y, c, term);
            }
            if (w.big.empty()) break;
            x = w.big[0];
        }
        // Every child of c is discovered while c is walked: c > 0 has the ids kid_end[c - 1]
        // to kid_end[c] - 1.
        w.kid_end.push_back(static_cast<int64_t>(w.cluster_parent.size()));
    }
    const int64_t k = static_cast<int64_t>(w.cluster_parent.size());
    w.term_start.push_back(static_cast<int64_t>(w.terms.size()));
    w.stability.resize(static_cast<size_t>(k));
    for (int64_t c = 0; c < k; ++c) {
        w.stability[c] = ordered_sum(w.terms.data() + w.term_start[c], w.terms.data() + w.term_start[c + 1]);
    }
    // EOM, children before parents (a child's id is larger): keep a cluster unless its
    // children's summed stability beats it; the root is never a candidate.
    w.marked.assign(static_cast<size_t>(k), 0);
    w.sub_terms.clear();
    for (int64_t c = k - 1; c >= 1; --c) {
        w.sub_terms.assign(w.stability.begin() + w.kid_end[c - 1], w.stability.begin() + w.kid_end[c]);
        const double sub = ordered_sum(w.sub_terms.data(), w.sub_terms.data() + w.sub_terms.size());
        if (sub > w.stability[c]) {
            w.stability[c] = sub;
        } else {
            w.marked[c] = 1;
        }
    }
    // Selected: marked with no marked ancestor; label_of[c]: the label of c's selected
    // ancestor-or-self, -1 if none (parents have smaller ids, so one pass in id order).
    w.covered.assign(static_cast<size_t>(k), 0);
    w.label_of.assign(static_cast<size_t>(k), -1);
    int64_t next_label = 0;
    for (int64_t c = 1; c < k; ++c) {
        const int64_t parent = w.cluster_parent[c];
        w.covered[c] = parent > 0 && (w.marked[parent] || w.covered[parent]);
        w.label_of[c] = w.marked[c] && !w.covered[c] ? next_label++ : w.label_of[parent];
    }
    labels.resize(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; ++p) labels[p] = w.label_of[w.point_cluster[p]];
}

}  // namespace

/// The stages after the MST (linkage, condense, select; docs/SPEC.md) on a sorted MST,
/// then the numbering by earliest member. With `linkage_ready` the workspace's linkage
/// already holds the tree's rows (insert_into_mst built them).
Clustering cluster_from_mst(std::vector<MstEdge> mst, const PointsView& points, const int64_t* steps,
                            const HdbscanParams& params, bool linkage_ready) {
    const int64_t n = points.rows;
    if (n == 1) return single_point();
    StageWorkspace& w = stage_workspace();
    if (!linkage_ready) linkage_into(mst, n, w);
    Clustering c;
    if (params.method == SelectionMethod::eom && !params.allow_single_cluster && params.epsilon == 0.0) {
        eom_labels(n, params.min_cluster_size, w, c.labels);
    } else {
        condense_tree(w.linkage, n, params.min_cluster_size, w.condense, w.condensed);
        select_clusters(w.condensed, n, params.method, params.allow_single_cluster, params.epsilon, w.select,
                        w.selection);
        c.labels = w.selection.labels;
    }
    c.sizes = number_clusters(c.labels, points, steps, c.noise);
    c.mst = std::move(mst);
    return c;
}

/// Below this many points a key is refitted by Prim's O(n^2) MST (on mutual reachability
/// when min_samples > 1), which beats building a kd-tree there and gives the one MST that is
/// minimal under (weight, u, v), as the Numba engine does.
constexpr int64_t kPrimMaxPoints = 256;

/// Batch HDBSCAN of `points` on `n_threads` threads (1 when the caller runs keys in parallel).
Clustering refit(const PointsView& points, const int64_t* steps, const HdbscanParams& params, int n_threads) {
    if (points.rows == 0) return Clustering{};
    if (points.rows == 1) return single_point();
    if (points.rows <= kPrimMaxPoints) {
        if (params.min_samples == 1) return cluster_from_mst(euclidean_mst(points), points, steps, params);
        const std::vector<double> core = core_distances(points, params.min_samples, 1);
        return cluster_from_mst(euclidean_mst(points, &core), points, steps, params);
    }
    HdbscanParams threaded = params;
    threaded.n_threads = n_threads;
    HdbscanResult result = hdbscan(points, threaded);
    Clustering c;
    c.labels = std::move(result.selection.labels);
    c.sizes = number_clusters(c.labels, points, steps, c.noise);
    c.mst = std::move(result.mst);
    return c;
}

}  // namespace memory_detail
}  // namespace medscore
