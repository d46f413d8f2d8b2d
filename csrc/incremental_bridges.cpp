// Candidate edges from appended points to the old ones (see medscore/incremental.hpp).
//
// T is an MST of the old points, and its single-linkage tree has node n + i for edge i. For
// a new point p, the edge (q, p) of weight W is left out of MST(T + edges of p) exactly when
// some q' in A_q(W) (the largest tree node holding q whose height is < W) comes before it in
// (weight, index) order: q and q' are joined by T edges lighter than W, so (q, p) is the
// heaviest edge of a cycle. The search below emits exactly the other edges: q is emitted at
// node A when q is the (weight, index)-smallest point of A and height(A) < W <= height(parent).
//
// For each new point the search first computes its bit-defined weight to every old point and
// the minimum over every subtree (O(n) per point, on 2n - 1 nodes), then walks the tree
// pruned by those exact minima, visiting each node at most once. (Bounds from the dendrogram
// as a metric tree, without touching the points, were tried: in 32 dimensions they prune
// almost nothing, because the distances within and between blobs concentrate.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "medscore/distance_batch.hpp"
#include "medscore/incremental.hpp"
#include "medscore/thread_pool.hpp"
#include "medscore/union_find.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The single-linkage tree of a sorted spanning tree: node x < n is point x, node n + i is
/// joined by edge i, whose weight is its height.
struct Dendrogram {
    int64_t n = 0;
    std::vector<int64_t> left, right;  // [n - 1] children of node n + i
    std::vector<double> height;        // [n - 1]
};

Dendrogram dendrogram_of(const std::vector<MstEdge>& tree, int64_t n) {
    Dendrogram g;
    g.n = n;
    UnionFind sets(n);
    std::vector<int64_t> node_of(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) node_of[i] = i;
    g.left.resize(static_cast<size_t>(n - 1));
    g.right.resize(static_cast<size_t>(n - 1));
    g.height.resize(static_cast<size_t>(n - 1));
    for (int64_t i = 0; i < n - 1; ++i) {
        const MstEdge& e = tree[i];
        const int64_t ru = sets.find(e.u), rv = sets.find(e.v);
        if (ru == rv) throw std::logic_error("bridge_edges: the old tree has a cycle");
        g.left[i] = node_of[ru];
        g.right[i] = node_of[rv];
        g.height[i] = e.weight;
        sets.unite(ru, rv);
        node_of[sets.find(ru)] = n + i;
    }
    return g;
}

/// One node of the depth-first search of one new point.
struct Frame {
    int64_t node;
    double emit_bound;    // emit the node's best point when height < weight <= emit_bound
    double search_bound;  // only points of weight <= search_bound are looked for
    double lower;         // smallest weight in the node
    int phase;
    int64_t far;
    double near_w;
    int64_t near_q;
};

class BridgeSearch {
public:
    BridgeSearch(const PointsView& points, const std::vector<double>& core, const Dendrogram& g)
        : points_(points), core_(core), g_(g), lowest_(static_cast<size_t>(2 * g.n - 1)) {}

    /// Appends the kept edges (q, p) of new point p to `out`.
    void run(int64_t p, std::vector<MstEdge>& out) {
        p_ = p;
        core_p_ = core_[p];
        exact_weights();
        stack_.clear();
        push(2 * g_.n - 2, kInf, kInf);
        while (!stack_.empty()) step(out);
    }

private:
    /// lowest_[x]: the smallest weight from p to the points of node x (bit-defined).
    void exact_weights() {
        const int64_t n = g_.n;
        constexpr int64_t kBlock = 64;
        const double* rows[kBlock];
        double squared[kBlock];
        for (int64_t start = 0; start < n; start += kBlock) {
            const int64_t count = std::min(kBlock, n - start);
            for (int64_t j = 0; j < count; ++j) rows[j] = points_.row(start + j);
            squared_distances(points_.row(p_), rows, count, points_.cols, squared);
            for (int64_t j = 0; j < count; ++j) {
                lowest_[start + j] = std::max({core_p_, core_[start + j], std::sqrt(squared[j])});
            }
        }
        for (int64_t i = 0; i < n - 1; ++i) lowest_[n + i] = std::min(lowest_[g_.left[i]], lowest_[g_.right[i]]);
    }

    void push(int64_t node, double emit_bound, double search_bound) {
        stack_.push_back(Frame{node, emit_bound, search_bound, lowest_[node], 0, -1, kInf, -1});
    }

    void finish(double w, int64_t q) {
        stack_.pop_back();
        ret_w_ = w;
        ret_q_ = q;
    }

    void step(std::vector<MstEdge>& out) {
        Frame& f = stack_.back();
        if (f.phase == 0 && f.lower > f.search_bound) return finish(kInf, -1);
        if (f.node < g_.n) return leaf(f, out);
        const int64_t i = f.node - g_.n;
        const double h = g_.height[i];
        if (f.phase == 0) {
            int64_t near = g_.left[i], far = g_.right[i];
            if (lowest_[far] < lowest_[near]) std::swap(near, far);
            f.phase = 1;
            f.far = far;
            const double search = f.search_bound;
            return push(near, h, search);  // invalidates f
        }
        if (f.phase == 1) {
            f.near_w = ret_w_;
            f.near_q = ret_q_;
            f.phase = 2;
            const double bound = std::max(std::min(f.search_bound, ret_w_), h);
            return push(f.far, h, bound);  // invalidates f
        }
        double w = ret_w_;
        int64_t q = ret_q_;
        if (f.near_q >= 0 && (q < 0 || f.near_w < w || (f.near_w == w && f.near_q < q))) { w = f.near_w; q = f.near_q; }
        if (q >= 0 && h < w && w <= f.emit_bound) out.push_back(MstEdge{q, p_, w});
        finish(w, q);
    }

    void leaf(const Frame& f, std::vector<MstEdge>& out) {
        const int64_t q = f.node;
        const double w = lowest_[q];
        if (w <= f.emit_bound) out.push_back(MstEdge{q, p_, w});
        finish(w, q);
    }

    const PointsView& points_;
    const std::vector<double>& core_;
    const Dendrogram& g_;
    std::vector<double> lowest_;
    std::vector<Frame> stack_;
    int64_t p_ = 0;
    double core_p_ = 0.0;
    double ret_w_ = kInf;
    int64_t ret_q_ = -1;
};

}  // namespace

std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, int n_threads) {
    check_points(points, "bridge_edges");
    if (n_old < 1 || n_old > points.rows || static_cast<int64_t>(tree.size()) != n_old - 1 ||
        static_cast<int64_t>(core.size()) != points.rows) {
        throw std::invalid_argument("bridge_edges: expected 1 <= n_old <= N, a tree of n_old - 1 edges and N core distances");
    }
    const int64_t n_new = points.rows - n_old;
    if (n_new == 0) return {};
    const Dendrogram g = dendrogram_of(tree, n_old);
    std::vector<std::vector<MstEdge>> found(static_cast<size_t>(n_new));
    parallel_for(n_new, n_threads, 16, [&](int64_t begin, int64_t end) {
        BridgeSearch search(points, core, g);
        for (int64_t j = begin; j < end; ++j) search.run(n_old + j, found[j]);
    });
    std::vector<MstEdge> edges;
    for (const auto& part : found) edges.insert(edges.end(), part.begin(), part.end());
    return edges;
}

}  // namespace medscore
