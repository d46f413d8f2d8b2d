// Exact repair of the neighbour graph and MST after an insert (see medscore/incremental.hpp).
//
// Core distances only shrink when points are added. Steps, for old points P and new B:
// 1. the new points' k nearest neighbours, and
// 2. reverse neighbours: old u with a new point strictly closer than core_old[u] (the only
//    way u's list changes), and each new point's old neighbourhood for step 4 (its distances
//    to the old points within an upper bound of its bridge range, less those that a nearby
//    old point provably rules out), all in one kd-tree range search shared by a group of
//    nearby new points, pruned by that bound and by each node's largest old core;
// 3. T*: an MST of P under the new core distances, the Kruskal tree of the old MST with its
//    weights recomputed plus the edges whose weight fell (an edge's weight falls only when it
//    was set by a core that shrank, so its other end is inside that point's old core ball,
//    i.e. in its old neighbour list; every other edge kept its weight and stays the heaviest
//    edge of a cycle of the reweighted old MST);
// 4. the MST of the new points among themselves, and the bridge edges of bridge_edges();
// 5. Kruskal over T* + those edges. Every threshold graph of the full graph is preserved by
//    this candidate set, so its MST is an MST of all points.
#include "medscore/incremental.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "medscore/dendrogram.hpp"
#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/kdtree.hpp"
#include "medscore/knn.hpp"
#include "medscore/kruskal.hpp"
#include "medscore/neighbor_heap.hpp"
#include "medscore/mst.hpp"
#include "medscore/thread_pool.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// A new point strictly closer to old point u than core_old[u].
struct Hit {
    int64_t u;
    double d;
    int64_t p;
};

/// Per kd-tree node: the largest old core distance of its old points (-inf if none or without
/// `core_old`), and the smallest and largest leaf id of its old points in the old points'
/// dendrogram (an empty range, first > last, if none): every old point of the node has its
/// leaf in [first, last]. Per tree position, the same facts of its point (-inf and -1 for a
/// new point), so that a leaf's scan reads them contiguously.
struct NodeSummary {
    std::vector<double> max_core;
    std::vector<int64_t> first_leaf, last_leaf;
    std::vector<double> core_at;
    std::vector<int64_t> leaf_at;
};

NodeSummary summarize_nodes(const KdTree& tree, int64_t n_old, const double* core_old, const Dendrogram& old_tree) {
    const auto& nodes = tree.nodes();
    NodeSummary s;
    s.max_core.assign(nodes.size(), -kInf);
    s.first_leaf.assign(nodes.size(), std::numeric_limits<int64_t>::max());
    s.last_leaf.assign(nodes.size(), -1);
    s.core_at.assign(static_cast<size_t>(tree.size()), -kInf);
    s.leaf_at.assign(static_cast<size_t>(tree.size()), -1);
    for (int64_t pos = 0; pos < tree.size(); ++pos) {
        const int64_t row = tree.original(pos);
        if (row >= n_old) continue;
        if (core_old != nullptr) s.core_at[pos] = core_old[row];
        s.leaf_at[pos] = old_tree.leaf_of[row];
    }
    for (auto id = static_cast<int64_t>(nodes.size()) - 1; id >= 0; --id) {  // children after parents
        const KdNode& node = nodes[id];
        if (node.left >= 0) {
            s.max_core[id] = std::max(s.max_core[node.left], s.max_core[node.right]);
            s.first_leaf[id] = std::min(s.first_leaf[node.left], s.first_leaf[node.right]);
            s.last_leaf[id] = std::max(s.last_leaf[node.left], s.last_leaf[node.right]);
            continue;
        }
        for (int64_t pos = node.start; pos < node.end; ++pos) {
            if (s.leaf_at[pos] < 0) continue;
            if (core_old != nullptr) s.max_core[id] = std::max(s.max_core[id], s.core_at[pos]);
            s.first_leaf[id] = std::min(s.first_leaf[id], s.leaf_at[pos]);
            s.last_leaf[id] = std::max(s.last_leaf[id], s.leaf_at[pos]);
        }
    }
    return s;
}

/// What the kd-tree pass over the new rows [n_old, N) needs to know about the old rows.
struct PassSpec {
    int64_t n_old = 0;
    int64_t k = 0;                        ///< nearest neighbours to find per new row; 0 for none
    const double* hit_core = nullptr;     ///< [n_old] cores before the insert, for reverse neighbours; or none
    const double* weight_core = nullptr;  ///< [n_old] upper bounds of the old rows' cores after the insert
    const double* new_core = nullptr;     ///< [N] exact cores after the insert, or none (bounded by the k-th distance)
    const Dendrogram* old_tree = nullptr; ///< of an MST T of the old rows; bottlenecks after the insert are <= T's
};

/// Bounds for one new point p from the points near it in the kd-tree: `range`, an upper bound
/// of both p's core distance and the range R of its bridge search, max(W(q0, p), new root
/// height) for the lightest old q0 (bridge_edges()); and `ref`, an old point with
/// W(ref, p) <= `ref_weight` after the insert. For one old q, W(q, p) = max(core[p], core[q],
/// d(p, q)) <= max(c, weight_core[q], d(p, q)) with c = core[p] if known, else the k-th smallest
/// distance from p to k other points (cores only shrink, and so does the bottleneck of the old
/// points' MST). The points are those of the smallest kd-tree nodes above p that hold k others
/// and an old one (at most 4096 of a node are looked at).
struct Reach {
    double range;
    double ref_weight;
    int64_t ref;
};

Reach reach_of(const KdTree& tree, const PassSpec& spec, int64_t p, std::vector<double>& scratch) {
    const auto& nodes = tree.nodes();
    const int64_t pos = tree.position(p), k = spec.new_core != nullptr ? 0 : spec.k;
    std::vector<int32_t> path{0};
    while (nodes[path.back()].left >= 0) {
        const KdNode& node = nodes[path.back()];
        path.push_back(pos < nodes[node.left].end ? node.left : node.right);
    }
    double kth = k == 0 ? spec.new_core[p] : kInf, old_weight = kInf;
    int64_t ref = -1;
    for (auto it = path.rbegin(); it != path.rend() && (kth == kInf || old_weight == kInf); ++it) {
        scratch.clear();
        const KdNode& node = nodes[*it];
        for (int64_t at = node.start; at < node.end && at - node.start < 4096; ++at) {
            if (at == pos) continue;
            const double d = std::sqrt(squared_distance(tree.point(pos), tree.point(at), tree.dim()));
            scratch.push_back(d);
            const int64_t q = tree.original(at);
            if (q < spec.n_old && std::max(spec.weight_core[q], d) < old_weight) {
                old_weight = std::max(spec.weight_core[q], d);
                ref = q;
            }
        }
        if (k > 0 && static_cast<int64_t>(scratch.size()) >= k) {
            std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end());
            kth = std::min(kth, scratch[k - 1]);
        }
    }
    const double ref_weight = std::max(kth, old_weight);
    return Reach{std::max(spec.old_tree->root_height(), ref_weight), ref_weight, ref};
}

/// One new point of a kd-tree pass and what the pass gathers for it: `heap`, its k nearest
/// other points (all within `reach.range`); `hits`, the old u with d(p, u) < hit_core[u] (p
/// enters u's neighbour list); `near`, p's bridge candidates for bridge_edges(): the old q
/// with d(p, q) <= `reach.range`, less those that `reach.ref` beats (see below).
struct PassMember {
    int64_t p = 0;
    int64_t query = 0;  // p's kd-tree position
    Reach reach{};
    AncestorChain ref_chain;  // of reach.ref in the old points' dendrogram
    NeighborHeap heap;
    std::vector<Hit> hits;
    std::vector<std::pair<double, int64_t>> near;
};

/// New points handled by one walk of the kd-tree. In 32 dimensions a point's range holds its
/// whole blob, and one walk per point streamed every leaf from memory once per point; a group
/// of points close in tree order shares the walk, so a leaf is loaded once for all members
/// that reach it and its distances are computed from cache.
constexpr int64_t kGroupSize = KdTree::kBlock;

/// Whether member m's walk enters kd-tree node `id`, given `lower`, a lower bound of its
/// distance to the node's points: when some point below may be one of its k
/// nearest (lower bound <= the k-th distance so far, or <= reach while it has fewer), a hit
/// (core_old[u] > lower bound), or a bridge candidate (within reach and not every old point
/// below beaten by the reference: d >= lower bound > ref_weight, and the bottleneck from ref
/// to every leaf id in the node's range is < lower bound <= d).
bool enters(const NodeSummary& summary, const PassMember& m, int64_t k, int32_t id, double lower) noexcept {
    const double reach = m.reach.range, max_core = summary.max_core[id];
    if (lower > reach && !(max_core > lower)) return false;
    if (max_core > lower) return true;
    if (k > 0 && lower <= m.heap.bound()) return true;
    const int64_t first = summary.first_leaf[id], last = summary.last_leaf[id];
    if (first > last) return false;  // no old point below
    return !(m.reach.ref >= 0 && lower > m.reach.ref_weight &&
             m.ref_chain.leaves_below(first, last, lower));
}

/// One kd-tree walk for a group of new points, gathering each member's PassMember results
/// exactly as a walk per point would, but skipping nodes it provably does not need (enters()).
void group_pass(const KdTree& tree, const PassSpec& spec, const NodeSummary& summary,
                std::vector<PassMember>& members) {
    const int64_t k = spec.k;
    const auto& nodes = tree.nodes();
    const auto count = static_cast<int32_t>(members.size());
    // Members still active at each node: the segment [begin, begin + size) of `active`. A
    // node's children share its segment; segments of finished subtrees are dropped (LIFO).
    struct Frame {
        int32_t node;
        int64_t begin, size;
    };
    std::vector<int32_t> active(static_cast<size_t>(count));
    std::vector<int64_t> queries(static_cast<size_t>(count));
    for (int32_t j = 0; j < count; ++j) {
        active[j] = j;
        queries[j] = members[j].query;
    }
    KdTree::QueryBlock block;
    tree.assign_block(queries.data(), count, block);
    double lower[KdTree::kBlock];
    const double* row_of[KdTree::kLeafSize];
    double distance[KdTree::kLeafSize];
    std::vector<Frame> stack{{0, 0, count}};
    while (!stack.empty()) {
        const Frame f = stack.back();
        stack.pop_back();
        active.resize(static_cast<size_t>(f.begin + f.size));
        const auto begin = static_cast<int64_t>(active.size());
        tree.lower_bounds(block, f.node, lower);  // for all members: cheaper than for a few
        for (int64_t i = f.begin; i < f.begin + f.size; ++i) {
            const int32_t j = active[i];
            if (enters(summary, members[j], k, f.node, lower[j])) active.push_back(j);
        }
        const int64_t size = static_cast<int64_t>(active.size()) - begin;
        if (size == 0) continue;
        const KdNode& node = nodes[f.node];
        if (node.left >= 0) {
            stack.push_back(Frame{node.right, begin, size});
            stack.push_back(Frame{node.left, begin, size});
            continue;
        }
        const int64_t first = summary.first_leaf[f.node], last = summary.last_leaf[f.node];
        // The leaf's rows once for all members (a member's own row gives d = 0 and is skipped).
        const int64_t rows = node.end - node.start;
        for (int64_t t = 0; t < rows; ++t) row_of[t] = tree.point(node.start + t);
        for (int64_t i = begin; i < begin + size; ++i) {
            PassMember& m = members[active[i]];
            squared_distances(tree.point(m.query), row_of, rows, tree.dim(), distance);
            for (int64_t t = 0; t < rows; ++t) distance[t] = std::sqrt(distance[t]);
            // Old points at d >= cut (and d > ref_weight) are beaten by ref: every leaf of the
            // node has a bottleneck to ref below the grid value `cut`.
            const double cut = m.reach.ref >= 0 && first <= last ? m.ref_chain.range_bound(first, last) : kInf;
            for (int64_t t = 0; t < rows; ++t) {
                const int64_t pos = node.start + t;
                if (pos == m.query) continue;
                const double d = distance[t];
                if (k > 0 && d <= m.heap.bound()) m.heap.offer(Neighbor{d, tree.original(pos)});
                if (summary.leaf_at[pos] < 0) continue;  // a new point
                if (d < summary.core_at[pos]) m.hits.push_back(Hit{tree.original(pos), d, m.p});
                if (d > m.reach.range) continue;
                if (d <= m.reach.ref_weight || m.reach.ref < 0 ||
                    (d < cut && !m.ref_chain.leaves_below(summary.leaf_at[pos], summary.leaf_at[pos], d))) {
                    m.near.emplace_back(d, tree.original(pos));
                }
            }
        }
    }
}

/// The kd-tree pass over the new rows of `tree`: each new row's old neighbourhood for
/// bridge_edges() into `near`; with spec.k > 0 its k nearest other rows into `g`; with
/// spec.hit_core the reverse neighbours, sorted by (u, d, p), into `hits`.
void run_pass(const KdTree& tree, const PassSpec& spec, IncrementalGraph* g, std::vector<Hit>* hits,
              OldNeighborhoods& near, int n_threads) {
    const NodeSummary summary = summarize_nodes(tree, spec.n_old, spec.hit_core, *spec.old_tree);
    const int64_t n_old = spec.n_old, n_new = tree.size() - n_old, k = spec.k;
    std::vector<int64_t> order(static_cast<size_t>(n_new));
    for (int64_t j = 0; j < n_new; ++j) order[j] = n_old + j;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return tree.position(a) < tree.position(b); });
    std::vector<std::vector<Hit>> parts(static_cast<size_t>(n_new));
    near.assign(static_cast<size_t>(n_new), {});
    const int64_t n_groups = (n_new + kGroupSize - 1) / kGroupSize;
    parallel_for(n_groups, n_threads, 1, [&](int64_t first, int64_t last) {
        std::vector<double> scratch;
        std::vector<PassMember> members;
        for (int64_t group = first; group < last; ++group) {
            const int64_t begin = group * kGroupSize, end = std::min(n_new, begin + kGroupSize);
            members.resize(static_cast<size_t>(end - begin));
            for (int64_t j = begin; j < end; ++j) {
                PassMember& m = members[j - begin];
                m.p = order[j];
                m.query = tree.position(m.p);
                m.reach = reach_of(tree, spec, m.p, scratch);
                if (m.reach.ref >= 0) m.ref_chain.assign(*spec.old_tree, m.reach.ref, m.reach.ref_weight, m.reach.range);
                m.heap.reset(spec.k);
            }
            group_pass(tree, spec, summary, members);
            for (PassMember& m : members) {
                const std::vector<Neighbor>& nearest = m.heap.sorted();
                for (int64_t i = 0; i < k; ++i) {
                    g->knn_index[m.p * k + i] = nearest[i].second;
                    g->knn_dist[m.p * k + i] = nearest[i].first;
                }
                parts[m.p - n_old] = std::move(m.hits);
                near[m.p - n_old] = std::move(m.near);
                m.hits.clear();
                m.near.clear();
            }
        }
    });
    if (hits == nullptr) return;
    hits->clear();
    for (const auto& part : parts) hits->insert(hits->end(), part.begin(), part.end());
    std::sort(hits->begin(), hits->end(), [](const Hit& a, const Hit& b) {
        return std::tie(a.u, a.d, a.p) < std::tie(b.u, b.d, b.p);
    });
}

/// Merges the sorted hits of old row u (hits[first, last)) into its k-list, in place.
void merge_row(int64_t* index, double* dist, int64_t k, const std::vector<Hit>& hits, size_t first, size_t last) {
    std::vector<Neighbor> merged;
    merged.reserve(static_cast<size_t>(k));
    int64_t a = 0;
    size_t b = first;
    while (static_cast<int64_t>(merged.size()) < k) {
        const bool take_old = b == last || (a < k && Neighbor{dist[a], index[a]} < Neighbor{hits[b].d, hits[b].p});
        merged.push_back(take_old ? Neighbor{dist[a], index[a]} : Neighbor{hits[b].d, hits[b].p});
        if (take_old) ++a; else ++b;
    }
    for (int64_t j = 0; j < k; ++j) { dist[j] = merged[j].first; index[j] = merged[j].second; }
}

/// Kruskal over two edge lists sorted by (weight, u, v) (kruskal_merge of kruskal.hpp).
std::vector<MstEdge> kruskal(const std::vector<MstEdge>& a, const std::vector<MstEdge>& b, int64_t n) {
    LinkageWorkspace sets;
    return kruskal_merge(a, b, n, sets, nullptr, "insert_rows");
}

MstEdge mutual_edge(const std::vector<double>& core, int64_t u, int64_t v, double d) {
    return MstEdge{std::min(u, v), std::max(u, v), std::max({core[u], core[v], d})};
}

/// T*: an MST of the old points under the new core distances (step 3 above).
std::vector<MstEdge> old_points_tree(const PointsView& points, int64_t n_old, const IncrementalGraph& old,
                                     const std::vector<double>& core) {
    const int64_t k = old.k;
    std::vector<MstEdge> kept, changed_edges;
    kept.reserve(old.mst.size());
    for (const MstEdge& e : old.mst) {
        if (core[e.u] == old.core[e.u] && core[e.v] == old.core[e.v]) {
            kept.push_back(e);
        } else {
            const double d = euclidean_distance(points.row(e.u), points.row(e.v), points.cols);
            changed_edges.push_back(mutual_edge(core, e.u, e.v, d));
        }
    }
    for (int64_t u = 0; u < n_old; ++u) {
        if (core[u] == old.core[u]) continue;
        for (int64_t j = 0; j < k && old.knn_dist[u * k + j] < old.core[u]; ++j) {
            changed_edges.push_back(mutual_edge(core, u, old.knn_index[u * k + j], old.knn_dist[u * k + j]));
        }
    }
    if (changed_edges.empty()) return old.mst;
    sort_edges(changed_edges);
    return kruskal(kept, changed_edges, n_old);
}

/// The MST of the new rows among themselves, in global row numbers.
std::vector<MstEdge> new_points_tree(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                     int n_threads) {
    const int64_t n_new = points.rows - n_old;
    if (n_new < 2) return {};
    const PointsView rows{points.row(n_old), n_new, points.cols};
    const std::vector<double> own(core.begin() + n_old, core.end());
    std::vector<MstEdge> tree = minimum_spanning_tree(rows, own, n_threads);
    for (MstEdge& e : tree) { e.u += n_old; e.v += n_old; }
    return tree;
}

void check_old_graph(const PointsView& points, int64_t n_old, const IncrementalGraph& old) {
    check_points(points, "insert_rows");
    const int64_t k = old.k;
    if (n_old < 2 || n_old >= points.rows || k < 1 || k > n_old - 1) {
        throw std::invalid_argument("insert_rows: need 2 <= n_old < N and 1 <= k <= n_old - 1, got n_old " +
                                    std::to_string(n_old) + ", N " + std::to_string(points.rows) + ", k " +
                                    std::to_string(k));
    }
    const auto cells = static_cast<size_t>(n_old * k);
    if (old.knn_index.size() != cells || old.knn_dist.size() != cells ||
        old.core.size() != static_cast<size_t>(n_old) || old.mst.size() != static_cast<size_t>(n_old - 1)) {
        throw std::invalid_argument("insert_rows: the old graph's arrays do not match n_old and k");
    }
    for (size_t i = 0; i < cells; ++i) {
        if (old.knn_index[i] < 0 || old.knn_index[i] >= n_old) {
            throw std::invalid_argument("insert_rows: old neighbour index out of range");
        }
    }
    for (const MstEdge& e : old.mst) {
        if (e.u < 0 || e.v < 0 || e.u >= n_old || e.v >= n_old || e.u == e.v) {
            throw std::invalid_argument("insert_rows: old MST edge out of range");
        }
    }
}

}  // namespace

void nearest_neighbors_of_rows(const PointsView& points, const std::vector<int64_t>& rows, int64_t k,
                               std::vector<int64_t>& indices, std::vector<double>& distances, int n_threads) {
    check_points(points, "nearest_neighbors_of_rows");
    if (k < 1 || k > points.rows - 1) throw std::invalid_argument("nearest_neighbors_of_rows: k must be in [1, N - 1]");
    for (const int64_t r : rows) {
        if (r < 0 || r >= points.rows) throw std::invalid_argument("nearest_neighbors_of_rows: row out of range");
    }
    if (rows.empty()) {
        indices.clear();
        distances.clear();
        return;
    }
    Neighbors found = nearest_neighbors(KdTree(points), rows, k, n_threads);
    indices = std::move(found.indices);
    distances = std::move(found.distances);
}

IncrementalGraph insert_rows(const PointsView& points, int64_t n_old, const IncrementalGraph& old, int n_threads) {
    check_old_graph(points, n_old, old);
    return insert_rows(points, n_old, old, KdTree(points), n_threads);
}

IncrementalGraph insert_rows(const PointsView& points, int64_t n_old, const IncrementalGraph& old, const KdTree& tree,
                             int n_threads) {
    check_old_graph(points, n_old, old);
    if (tree.size() != points.rows || tree.dim() != points.cols) {
        throw std::invalid_argument("insert_rows: the kd-tree must hold every row of the points");
    }
    const int64_t n = points.rows, k = old.k;
    IncrementalGraph g;
    g.k = k;
    g.knn_index = old.knn_index;
    g.knn_dist = old.knn_dist;
    g.knn_index.resize(static_cast<size_t>(n * k));
    g.knn_dist.resize(static_cast<size_t>(n * k));
    OldNeighborhoods near;
    std::vector<Hit> hits;
    const Dendrogram old_tree = dendrogram_of(old.mst, n_old);
    PassSpec spec;
    spec.n_old = n_old;
    spec.k = k;
    spec.hit_core = old.core.data();
    spec.weight_core = old.core.data();
    spec.old_tree = &old_tree;
    run_pass(tree, spec, &g, &hits, near, n_threads);
    for (size_t first = 0, last = 0; first < hits.size(); first = last) {
        while (last < hits.size() && hits[last].u == hits[first].u) ++last;
        const int64_t u = hits[first].u;
        merge_row(g.knn_index.data() + u * k, g.knn_dist.data() + u * k, k, hits, first, last);
    }
    g.core.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g.core[i] = g.knn_dist[i * k + k - 1];
    const std::vector<MstEdge> tree_old = old_points_tree(points, n_old, old, g.core);
    // Candidates against the old MST's dendrogram: its bottlenecks are >= those of tree_old
    // (weights only fall), so it rules out fewer points and still keeps every edge that
    // MST(tree_old + edges of p) keeps.
    std::vector<MstEdge> added = bridge_edges(old_tree, g.core, near, n_threads);
    const std::vector<MstEdge> among_new = new_points_tree(points, n_old, g.core, n_threads);
    added.insert(added.end(), among_new.begin(), among_new.end());
    sort_edges(added);
    g.mst = kruskal(tree_old, added, n);
    return g;
}

std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, const KdTree& kd, int n_threads) {
    check_points(points, "bridge_edges");
    if (n_old < 1 || n_old > points.rows || static_cast<int64_t>(tree.size()) != n_old - 1 ||
        static_cast<int64_t>(core.size()) != points.rows || kd.size() != points.rows || kd.dim() != points.cols) {
        throw std::invalid_argument("bridge_edges: expected 1 <= n_old <= N, a tree of n_old - 1 edges, N core "
                                    "distances and a kd-tree of the N points");
    }
    if (n_old == points.rows) return {};
    const Dendrogram dendrogram = dendrogram_of(tree, n_old);
    PassSpec spec;
    spec.n_old = n_old;
    spec.weight_core = core.data();
    spec.new_core = core.data();
    spec.old_tree = &dendrogram;
    OldNeighborhoods near;
    run_pass(kd, spec, nullptr, nullptr, near, n_threads);
    return bridge_edges(dendrogram, core, near, n_threads);
}

std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, int n_threads) {
    check_points(points, "bridge_edges");
    return bridge_edges(points, n_old, core, tree, KdTree(points), n_threads);
}

}  // namespace medscore
