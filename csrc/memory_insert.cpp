// Exact Euclidean minimum spanning trees for the keyed memory: appending points to a tree,
// and Prim's algorithm for small sets.
//
// Edges are ordered strictly by (weight, u, v) (u < v). Under a strict order the MST of a
// graph is unique and an edge is left out exactly when it is the heaviest edge of some
// cycle. Appending the points B to A with tree T_A: let H = T_A + every edge touching B (H
// holds an MST of A + B, since an edge of A outside T_A is no lighter than the T_A path
// between its ends). An edge (q, a), q in B, that the MST of T_A + {edges of q} leaves out
// is the heaviest edge of a cycle in H, and so is an edge within B that MST(B) leaves out.
// So MST(H) is the Kruskal tree of T_A + MST(B) + any superset of the edges each q keeps
// alone with T_A.
//
// Which edges can q keep? Let b be q's nearest old point ((b, q) first in the strict order).
// If (a, q) is kept, the T_A path from a to b has an edge that is not lighter than (a, q)
// (else that path and (b, q) close a cycle on which (a, q) is heaviest). So q's candidates
// are b and the a with |a - q| <= the heaviest edge weight on the T_A path from a to b:
// usually a handful. Those path maxima come from one preorder pass over T_A (rooted once
// per call), so each q costs O(|A|) cheap steps after its |A| squared distances.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/incremental.hpp"
#include "medscore/kruskal.hpp"
#include "medscore/linkage.hpp"
#include "medscore/memory.hpp"
#include "medscore/mst.hpp"
#include "medscore/thread_local.hpp"


namespace medscore {
namespace {

/// The old tree rooted at vertex 0 (preorder, parents, weight of each parent edge); built
/// once per call and shared by every new point.
struct RootedTree {
    std::vector<int64_t> start, fill, vertex, edge, order, parent, stack;
    std::vector<double> parent_weight;
};

/// Buffers reused across calls on one thread (the memory's threads work key by key).
struct Workspace {
    RootedTree tree;
    std::vector<double> to_q;        // [n_old] squared distances from the new point q
    std::vector<double> path_max;    // [n_old] heaviest edge weight on the path to q's nearest
    std::vector<int64_t> on_path;    // [n_old] q if the vertex is on the path from q's nearest to the root
    std::vector<MstEdge> candidates; // new edges that may enter the MST
    std::vector<double> best;        // Prim: lightest known edge into the tree
    std::vector<int64_t> best_from;
    std::vector<int64_t> remaining;  // Prim: vertices not yet in the tree
    PointColumns columns;            // Prim: the rows by coordinate
    std::vector<double> row;         // Prim: squared distances from the last vertex added
    LinkageWorkspace sets;           // Kruskal's disjoint sets and linkage nodes
};

MEDSCORE_TLS_ACCESSOR Workspace& workspace() {
    thread_local Workspace w;
    return w;
}

void root_tree(const std::vector<MstEdge>& mst, int64_t n, RootedTree& t) {
    t.start.assign(static_cast<size_t>(n + 1), 0);
    for (const MstEdge& e : mst) { ++t.start[e.u + 1]; ++t.start[e.v + 1]; }
    for (int64_t v = 0; v < n; ++v) t.start[v + 1] += t.start[v];
    t.vertex.resize(2 * mst.size());
    t.edge.resize(2 * mst.size());
    t.fill.assign(t.start.begin(), t.start.end() - 1);
    for (size_t i = 0; i < mst.size(); ++i) {
        const MstEdge& e = mst[i];
        t.vertex[t.fill[e.u]] = e.v; t.edge[t.fill[e.u]++] = static_cast<int64_t>(i);
        t.vertex[t.fill[e.v]] = e.u; t.edge[t.fill[e.v]++] = static_cast<int64_t>(i);
    }
    t.order.clear();
    t.parent.assign(static_cast<size_t>(n), -1);
    t.parent_weight.assign(static_cast<size_t>(n), 0.0);
    t.stack.assign(1, 0);
    t.parent[0] = 0;  // marks the root as seen; reset below
    while (!t.stack.empty()) {
        const int64_t v = t.stack.back();
        t.stack.pop_back();
        t.order.push_back(v);
        for (int64_t a = t.start[v]; a < t.start[v + 1]; ++a) {
            const int64_t x = t.vertex[a];
            if (t.parent[x] >= 0) continue;
            t.parent[x] = v;
            t.parent_weight[x] = mst[t.edge[a]].weight;
            t.stack.push_back(x);
        }
    }
    t.parent[0] = -1;
    if (static_cast<int64_t>(t.order.size()) != n) throw std::logic_error("insert_into_mst: the MST is not connected");
}

/// Most squared distances insert_into_mst holds at once (8 MiB); beyond, one row at a time.
constexpr int64_t kMaxSquaredRows = int64_t{1} << 20;

/// Relative slack on squared comparisons: they stand in for comparisons of their square
/// roots, and may only let extra candidates through, never drop one.
constexpr double kSquaredSlack = 1e-12;

/// Appends to w.candidates the edges (a, q) that q may keep (see the top of this file), given
/// the squared distances `squared` [n_old] from q to the old vertices. Works on squared
/// distances (a square root only per candidate): the point with the smallest squared
/// distance serves as q's nearest b, and every a whose distance may tie with b's is a
/// candidate too (then (a, q) may come before (b, q) in the strict order).
void candidates_of_vertex(int64_t q, const double* squared, Workspace& w) {
    const RootedTree& t = w.tree;
    const int64_t n = static_cast<int64_t>(t.parent.size());
    int64_t nearest = 0;
    for (int64_t a = 1; a < n; ++a) {
        if (squared[a] < squared[nearest]) nearest = a;
    }
    w.path_max.resize(static_cast<size_t>(n));
    // Path maxima towards `nearest`: up its root path first, then down every other branch.
    double heaviest = 0.0;
    w.path_max[nearest] = 0.0;
    w.on_path[nearest] = q;
    for (int64_t x = nearest; t.parent[x] >= 0; x = t.parent[x]) {
        heaviest = std::max(heaviest, t.parent_weight[x]);
        w.path_max[t.parent[x]] = heaviest;
        w.on_path[t.parent[x]] = q;
    }
    // One preorder pass: a vertex's path maximum is known once its parent's is, and is
    // tested at once (the candidates' order does not matter: Kruskal sorts them).
    const double near_tie = squared[nearest] * (1.0 + kSquaredSlack);
    double* path_max = w.path_max.data();
    const int64_t* on_path = w.on_path.data();
    const int64_t* parent = t.parent.data();
    const double* parent_weight = t.parent_weight.data();
    for (const int64_t v : t.order) {
        double pm = path_max[v];
        if (on_path[v] != q) {
            pm = std::max(path_max[parent[v]], parent_weight[v]);
            path_max[v] = pm;
        }
        if (squared[v] <= near_tie || squared[v] <= pm * pm * (1.0 + kSquaredSlack)) {
            w.candidates.push_back(MstEdge{v, q, std::sqrt(squared[v])});
        }
    }
}

/// Squared distances this far apart (relative) have different square roots: IEEE sqrt is
/// correctly rounded, so sqrt(a) <= sqrt(b) (1 - 2^-51) sits at least two ulps below sqrt(b).
constexpr double kSquaresApart = 1.0 - 0x1p-50;

/// Whether the edge (ua, va) of squared length sq_a precedes (ub, vb) of squared length sq_b
/// in the strict order (sqrt(sq), u, v): squares decide unless their roots may be equal.
inline bool precedes_by_square(double sq_a, int64_t ua, int64_t va, double sq_b, int64_t ub, int64_t vb) noexcept {
    if (sq_a < sq_b * kSquaresApart) return true;
    if (sq_b < sq_a * kSquaresApart) return false;
    const double wa = std::sqrt(sq_a), wb = std::sqrt(sq_b);
    if (wa != wb) return wa < wb;
    if (ua != ub) return ua < ub;
    return va < vb;
}

/// Prim's algorithm over `count` vertices under the strict edge order; appends the tree's
/// edges (vertex i named `first + i`) to `out`, unsorted. `squared_row(v, buffer)` returns the
/// squared distances from vertex v to every vertex (it may fill and return `buffer`, which
/// holds w.row). With `core` (one entry per vertex) the weights are mutual reachabilities
/// max(core_a, core_b, d), else distances d, compared by their squares (precedes_by_square)
/// so that only the chosen edges take a square root.
template <class SquaredRow>
void prim_over(int64_t count, int64_t first, const double* core, Workspace& w, std::vector<MstEdge>& out,
               SquaredRow&& squared_row) {
    if (count < 2) return;
    w.best.resize(static_cast<size_t>(count));
    w.best_from.resize(static_cast<size_t>(count));
    w.remaining.resize(static_cast<size_t>(count - 1));
    for (int64_t v = 1; v < count; ++v) w.remaining[v - 1] = v;
    double* best = w.best.data();  // v's known edge: squared distance, or reachability with core
    int64_t* from = w.best_from.data();
    int64_t* remaining = w.remaining.data();
    int64_t left = count - 1;
    auto weight = [&](int64_t a, int64_t b, const double* squared) {  // with core: the reachability
        const double d = std::sqrt(squared[b]);
        return std::max(std::max(core[a], core[b]), d);
    };
    // Whether v's known edge precedes that of u (the strict order on (weight, ends)).
    auto known_precedes = [&](int64_t v, int64_t u) {
        const int64_t v0 = std::min(from[v], v), v1 = std::max(from[v], v);
        const int64_t u0 = std::min(from[u], u), u1 = std::max(from[u], u);
        if (core == nullptr) return precedes_by_square(best[v], v0, v1, best[u], u0, u1);
        if (best[v] != best[u]) return best[v] < best[u];
        return v0 != u0 ? v0 < u0 : v1 < u1;
    };
    const double* row = squared_row(0, w.row);
    for (int64_t p = 0; p < left; ++p) {
        const int64_t v = remaining[p];
        best[v] = core == nullptr ? row[v] : weight(0, v, row);
        from[v] = 0;
    }
    while (left > 0) {
        int64_t at = 0;
        for (int64_t p = 1; p < left; ++p) {
            const int64_t v = remaining[p], u = remaining[at];
            // Squares far apart decide at once; near ties take the exact comparison.
            if (core == nullptr && best[v] < best[u] * kSquaresApart) { at = p; continue; }
            if (core == nullptr && best[u] < best[v] * kSquaresApart) continue;
            if (known_precedes(v, u)) at = p;
        }
        const int64_t last = remaining[at];
        out.push_back(MstEdge{std::min(from[last], last) + first, std::max(from[last], last) + first,
                              core == nullptr ? std::sqrt(best[last]) : best[last]});
        remaining[at] = remaining[--left];  // the scan order does not matter: the order is strict
        if (left == 0) break;
        row = squared_row(last, w.row);
        for (int64_t p = 0; p < left; ++p) {
            const int64_t v = remaining[p];
            const int64_t e0 = std::min(last, v), e1 = std::max(last, v);
            const int64_t k0 = std::min(from[v], v), k1 = std::max(from[v], v);
            bool replace;
            if (core == nullptr) {
                const double sq = row[v];
                replace = sq < best[v] * kSquaresApart ||
                          (!(best[v] < sq * kSquaresApart) && precedes_by_square(sq, e0, e1, best[v], k0, k1));
                if (replace) best[v] = sq;
            } else {
                const double d = weight(last, v, row);
                replace = d < best[v] || (d == best[v] && (e0 != k0 ? e0 < k0 : e1 < k1));
                if (replace) best[v] = d;
            }
            if (replace) from[v] = last;
        }
    }
}

/// Up to this many vertices Prim's algorithm runs on a local matrix of every weight
/// (prim_tiny): a key of a few points then costs no workspace traffic (the memory's first
/// steps refit a thousand keys of about eight points each).
constexpr int64_t kTinyPrimRows = 16;

/// Prim's algorithm over count <= kTinyPrimRows vertices, appending the tree's edges (vertex
/// i named `first + i`, unsorted) to `out`: the tree prim_over gives. Every weight is taken
/// first (the square root of squared_of(a, b), or with `core` the reachability max(core[a],
/// core[b], d)); a vertex's best edge is kept as (weight, ends packed as u * 32 + v), and the
/// strict order (weight, u, v) is compared without branches, since on a few vertices the
/// mispredicted branches of prim_over cost more than its skipped square roots.
template <class SquaredOf>
void prim_tiny(int64_t count, int64_t first, const double* core, std::vector<MstEdge>& out, SquaredOf&& squared_of) {
    const int n = static_cast<int>(count);
    // Each pair once: squared distances, then their roots in a loop of their own (it
    // vectorises, and the square roots overlap), then both halves of the matrix.
    double pair[kTinyPrimRows * (kTinyPrimRows - 1) / 2];
    int pairs = 0;
    for (int a = 0; a < n; ++a) {
        for (int b = a + 1; b < n; ++b) pair[pairs++] = squared_of(a, b);
    }
    for (int i = 0; i < pairs; ++i) pair[i] = std::sqrt(pair[i]);
    double weight[kTinyPrimRows * kTinyPrimRows];
    pairs = 0;
    for (int a = 0; a < n; ++a) {
        for (int b = a + 1; b < n; ++b) {
            const double d = pair[pairs++];
            weight[a * n + b] = weight[b * n + a] = core == nullptr ? d : std::max(std::max(core[a], core[b]), d);
        }
    }
    double best[kTinyPrimRows];
    int ends[kTinyPrimRows], remaining[kTinyPrimRows];
    for (int v = 1; v < n; ++v) {
        remaining[v - 1] = v;
        best[v] = weight[v];  // the edge (0, v)
        ends[v] = v;
    }
    for (int left = n - 1; left > 0;) {
        int at = 0;
        double w = best[remaining[0]];
        int e = ends[remaining[0]];
        for (int p = 1; p < left; ++p) {
            const int v = remaining[p];
            const bool lt = (best[v] < w) | ((best[v] == w) & (ends[v] < e));
            at = lt ? p : at;
            w = lt ? best[v] : w;
            e = lt ? ends[v] : e;
        }
        const int last = remaining[at];
        out.push_back(MstEdge{(e >> 5) + first, (e & 31) + first, w});
        remaining[at] = remaining[--left];  // the scan order does not matter: the order is strict
        const double* row = weight + last * n;
        for (int p = 0; p < left; ++p) {
            const int v = remaining[p];
            const int ev = last < v ? last * 32 + v : v * 32 + last;
            const bool lt = (row[v] < best[v]) | ((row[v] == best[v]) & (ev < ends[v]));
            best[v] = lt ? row[v] : best[v];
            ends[v] = lt ? ev : ends[v];
        }
    }
}

/// Prim's algorithm on rows [first, first + count) of `points` (prim_tiny on a few rows, else
/// prim_over with distances from the rows stored by coordinate); appends the tree's edges
/// (global row indices) to `out`.
void prim(const PointsView& points, int64_t first, int64_t count, const double* core, Workspace& w,
          std::vector<MstEdge>& out) {
    if (count < 2) return;
    if (count <= kTinyPrimRows) {
        prim_tiny(count, first, core, out, [&](int a, int b) {
            return squared_distance(points.row(first + a), points.row(first + b), points.cols);
        });
        return;
    }
    w.columns.assign(points, first, count);
    w.row.resize(static_cast<size_t>(w.columns.stride()));
    prim_over(count, first, core, w, out, [&](int64_t v, std::vector<double>& buffer) {
        w.columns.squared_distances(points.row(first + v), buffer.data());
        return static_cast<const double*>(buffer.data());
    });
}

/// Kruskal (kruskal_merge of kruskal.hpp) over `old_sorted` and the `added` edges, which
/// are sorted here: the spanning tree sorted by the strict order, with its linkage rows if
/// `linkage` is not null.
std::vector<MstEdge> kruskal(const std::vector<MstEdge>& old_sorted, std::vector<MstEdge>& added, int64_t n,
                             Workspace& w, std::vector<LinkageRow>* linkage = nullptr) {
    std::sort(added.begin(), added.end(), EdgeLess{});
    return kruskal_merge(old_sorted, added, n, w.sets, linkage, "insert_into_mst");
}

/// Below this many rows mst_by_halves runs Prim's O(n^2) directly.
constexpr int64_t kHalvesLeafRows = 512;

/// The strict MST of rows [first, first + count) of `points`, in local indices (row first + i
/// is vertex i), sorted. Divide and conquer: the MSTs of the two halves and the kd-tree
/// candidate edges between them (bridge_edges of incremental.hpp, with core distances 0 so
/// that its weights are plain distances) hold the MST of the whole (the argument at the top
/// of this file, with the first half as A and the second as B); Kruskal picks it.
std::vector<MstEdge> mst_by_halves(const PointsView& points, int64_t first, int64_t count, int n_threads) {
    Workspace& w = workspace();
    const PointsView rows{points.row(first), count, points.cols};
    std::vector<MstEdge> tree;
    if (count <= kHalvesLeafRows) {
        tree.reserve(static_cast<size_t>(std::max<int64_t>(count - 1, 0)));
        prim(rows, 0, count, nullptr, w, tree);
        std::sort(tree.begin(), tree.end(), EdgeLess{});
        return tree;
    }
    const int64_t half = count / 2;
    const std::vector<MstEdge> left = mst_by_halves(points, first, half, n_threads);
    std::vector<MstEdge> added = mst_by_halves(points, first + half, count - half, n_threads);
    for (MstEdge& e : added) { e.u += half; e.v += half; }
    const std::vector<MstEdge> bridges = bridge_edges(rows, half, std::vector<double>(static_cast<size_t>(count), 0.0),
                                                      left, n_threads);
    for (const MstEdge& e : bridges) added.push_back(MstEdge{std::min(e.u, e.v), std::max(e.u, e.v), e.weight});
    return kruskal(left, added, count, w);
}

}  // namespace

std::vector<MstEdge> euclidean_mst_by_halves(const PointsView& points, int n_threads) {
    if (points.rows < 1 || points.cols < 1) {
        throw std::invalid_argument("euclidean_mst_by_halves: expected a non-empty [N, D] matrix");
    }
    return mst_by_halves(points, 0, points.rows, n_threads);
}

std::vector<MstEdge> insert_into_mst_by_kdtree(const std::vector<MstEdge>& mst, const PointsView& points,
                                               int64_t n_old, int n_threads) {
    if (n_old < 1 || points.rows < n_old || static_cast<int64_t>(mst.size()) != n_old - 1) {
        throw std::invalid_argument("insert_into_mst_by_kdtree: expected an MST of n_old - 1 edges over n_old >= 1 of the " +
                                    std::to_string(points.rows) + " points");
    }
    if (points.rows == n_old) return mst;
    const int64_t m = points.rows - n_old;
    std::vector<MstEdge> added = mst_by_halves(points, n_old, m, n_threads);
    for (MstEdge& e : added) { e.u += n_old; e.v += n_old; }
    const std::vector<MstEdge> bridges =
        bridge_edges(points, n_old, std::vector<double>(static_cast<size_t>(points.rows), 0.0), mst, n_threads);
    for (const MstEdge& e : bridges) added.push_back(MstEdge{std::min(e.u, e.v), std::max(e.u, e.v), e.weight});
    return kruskal(mst, added, points.rows, workspace());
}

std::vector<MstEdge> euclidean_mst(const PointsView& points, const std::vector<double>* core) {
    if (points.rows < 1 || points.cols < 1) throw std::invalid_argument("euclidean_mst: expected a non-empty [N, D] matrix");
    if (core != nullptr && static_cast<int64_t>(core->size()) != points.rows) {
        throw std::invalid_argument("euclidean_mst: core must have one entry per point");
    }
    Workspace& w = workspace();
    std::vector<MstEdge> tree;
    tree.reserve(static_cast<size_t>(points.rows - 1));
    prim(points, 0, points.rows, core == nullptr ? nullptr : core->data(), w, tree);
    std::sort(tree.begin(), tree.end(), EdgeLess{});
    return tree;
}

std::vector<MstEdge> insert_into_mst(const std::vector<MstEdge>& mst, const PointsView& points, int64_t n_old,
                                     const double* squared, int64_t squared_stride,
                                     std::vector<LinkageRow>* linkage) {
    if (n_old < 1 || points.rows < n_old || static_cast<int64_t>(mst.size()) != n_old - 1) {
        throw std::invalid_argument("insert_into_mst: expected an MST of n_old - 1 edges over n_old >= 1 of the " +
                                    std::to_string(points.rows) + " points");
    }
    if (squared != nullptr && squared_stride < points.rows) {
        throw std::invalid_argument("insert_into_mst: squared_stride must be at least the number of points");
    }
    for (size_t i = 1; i < mst.size(); ++i) {
        if (edge_less(mst[i], mst[i - 1])) throw std::invalid_argument("insert_into_mst: the MST is not sorted");
    }
    Workspace& w = workspace();
    w.candidates.clear();
    if (points.rows == n_old) {
        if (linkage != nullptr) {
            std::vector<MstEdge> none;
            return kruskal(mst, none, n_old, w, linkage);
        }
        return mst;
    }
    const int64_t m = points.rows - n_old;
    root_tree(mst, n_old, w.tree);
    w.on_path.assign(static_cast<size_t>(n_old), -1);
    const int64_t stride = (points.rows + 7) / 8 * 8;
    if (squared == nullptr && m * stride <= kMaxSquaredRows) {
        // Every row by coordinate: each new row then meets all rows in one vectorised pass.
        w.columns.assign(points, 0, points.rows);
        w.to_q.resize(static_cast<size_t>(m * stride));
        for (int64_t j = 0; j < m; ++j) w.columns.squared_distances(points.row(n_old + j), w.to_q.data() + j * stride);
        squared = w.to_q.data();
        squared_stride = stride;
    }
    if (squared != nullptr) {
        for (int64_t j = 0; j < m; ++j) candidates_of_vertex(n_old + j, squared + j * squared_stride, w);
        // The new rows' own MST from the same rows (their entries n_old onwards).
        if (m <= kTinyPrimRows) {
            prim_tiny(m, n_old, nullptr, w.candidates,
                      [&](int a, int b) { return squared[a * squared_stride + n_old + b]; });
        } else {
            prim_over(m, n_old, nullptr, w, w.candidates, [&](int64_t v, std::vector<double>&) {
                return static_cast<const double*>(squared + v * squared_stride + n_old);
            });
        }
    } else {  // a big memory: one row of distances at a time
        w.to_q.resize(static_cast<size_t>(n_old));
        for (int64_t q = n_old; q < points.rows; ++q) {
            for (int64_t a = 0; a < n_old; ++a) w.to_q[a] = squared_distance(points.row(a), points.row(q), points.cols);
            candidates_of_vertex(q, w.to_q.data(), w);
        }
        prim(points, n_old, m, nullptr, w, w.candidates);
    }
    return kruskal(mst, w.candidates, points.rows, w, linkage);
}

}  // namespace medscore
