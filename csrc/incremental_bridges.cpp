// Candidate edges from appended points to the old ones (see medscore/incremental.hpp).
//
// T is an MST of the old points, and its single-linkage tree has node n + i for edge i. For
// a new point p, the edge (q, p) of weight W is left out of MST(T + edges of p) exactly when
// some q' in A_q(W) (the largest tree node holding q whose height is < W) comes before it in
// (weight, index) order: q and q' are joined by T edges lighter than W, so (q, p) is the
// heaviest edge of a cycle. The search below emits exactly the other edges: q is emitted at
// node A when q is the (weight, index)-smallest point of A and height(A) < W <= height(parent).
//
// The search needs lower bounds of p's weights over a subtree without touching its points.
// The dendrogram doubles as a metric tree: along each heavy path (from a node to its larger
// child) the nodes share one center (the centroid of the path's head, or a point for small
// heads), and each node keeps the smallest and largest distance from that center to its
// points (inner, outer) and `link`, the distance from its parent's center to its own. By the
// triangle inequality d(p, q) >= max(d(p, c) - outer, inner - d(p, c)) for q in the node, and
// d(p, c) is within d(p, c_parent) +- link, so a node costs O(1) unless its center changes
// (at most log2(n) times down a path). Rounding is covered by a relative margin; every weight
// that decides the result is the bit-defined one.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/incremental.hpp"
#include "medscore/thread_pool.hpp"
#include "medscore/union_find.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The single-linkage tree of a sorted spanning tree, annotated as a metric tree (above).
/// Nodes 0..n-1 are points, node n + i is joined by edge i; arrays over nodes have 2n - 1 entries.
struct MetricDendrogram {
    int64_t n = 0;
    std::vector<int64_t> left, right;     // [n - 1] children of node n + i
    std::vector<double> height;           // [n - 1]
    std::vector<const double*> center;    // shared along a heavy path: a centroid or a point
    std::vector<double> inner, outer;     // bounds of the distances from center to the node's points
    std::vector<double> link;             // distance from the parent's center (0 if the same)
    std::vector<double> min_core;         // smallest core distance of the node's points
    std::vector<double> centroids;        // storage of the centroids
    double margin = 0.0;                  // relative rounding margin of the bounds
};

/// Heavy paths from heads at least this large get a centroid; smaller ones use a point.
constexpr int64_t kCentroidMin = 16;

void link_children(const std::vector<MstEdge>& tree, MetricDendrogram& g) {
    const int64_t n = g.n;
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
}

/// Node sizes and the leaves in dendrogram order: node x holds order[begin[x], begin[x] + size[x]).
struct LeafOrder {
    std::vector<int64_t> size, begin, order;
};

LeafOrder leaf_order(const MetricDendrogram& g) {
    const int64_t n = g.n, nodes = 2 * n - 1;
    LeafOrder o;
    o.size.assign(static_cast<size_t>(nodes), 1);
    o.begin.assign(static_cast<size_t>(nodes), 0);
    o.order.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n - 1; ++i) o.size[n + i] = o.size[g.left[i]] + o.size[g.right[i]];
    for (int64_t x = nodes - 1; x >= n; --x) {  // parents have larger ids than their children
        o.begin[g.left[x - n]] = o.begin[x];
        o.begin[g.right[x - n]] = o.begin[x] + o.size[g.left[x - n]];
    }
    for (int64_t x = 0; x < n; ++x) o.order[o.begin[x]] = x;
    return o;
}

int64_t heavy_child(const MetricDendrogram& g, const LeafOrder& o, int64_t x) {
    const int64_t a = g.left[x - g.n], b = g.right[x - g.n];
    return o.size[a] >= o.size[b] ? a : b;
}

/// Annotates the heavy path starting at `head` (its center and radii; see MetricDendrogram).
void annotate_path(const PointsView& points, const LeafOrder& o, int64_t head, const double* centroid,
                   MetricDendrogram& g) {
    std::vector<int64_t> path{head};
    while (path.back() >= g.n) path.push_back(heavy_child(g, o, path.back()));
    const double* c = centroid != nullptr ? centroid : points.row(path.back());
    const double shrink = 1.0 - g.margin, grow = 1.0 + g.margin;
    const double d_leaf = euclidean_distance(c, points.row(path.back()), points.cols);
    double lo = d_leaf, hi = d_leaf;
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
        const int64_t x = *it;
        if (x >= g.n) {
            const int64_t big = heavy_child(g, o, x), small = big == g.left[x - g.n] ? g.right[x - g.n] : g.left[x - g.n];
            for (int64_t j = o.begin[small]; j < o.begin[small] + o.size[small]; ++j) {
                const double d = euclidean_distance(c, points.row(o.order[j]), points.cols);
                lo = std::min(lo, d);
                hi = std::max(hi, d);
            }
        }
        g.center[x] = c;
        g.inner[x] = lo * shrink;
        g.outer[x] = hi * grow;
    }
}

/// The mean of the points of node x, appended to g.centroids (which must not reallocate).
const double* add_centroid(const PointsView& points, const LeafOrder& o, int64_t x, MetricDendrogram& g) {
    const int64_t d = points.cols;
    const size_t at = g.centroids.size();
    g.centroids.resize(at + static_cast<size_t>(d), 0.0);
    double* c = g.centroids.data() + at;
    for (int64_t j = o.begin[x]; j < o.begin[x] + o.size[x]; ++j) {
        const double* q = points.row(o.order[j]);
        for (int64_t t = 0; t < d; ++t) c[t] += q[t];
    }
    for (int64_t t = 0; t < d; ++t) c[t] /= static_cast<double>(o.size[x]);
    return c;
}

MetricDendrogram build_dendrogram(const PointsView& points, int64_t n, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree) {
    MetricDendrogram g;
    g.n = n;
    link_children(tree, g);
    const LeafOrder o = leaf_order(g);
    const auto nodes = static_cast<size_t>(2 * n - 1);
    g.center.assign(nodes, nullptr);
    g.inner.assign(nodes, 0.0);
    g.outer.assign(nodes, 0.0);
    g.link.assign(nodes, 0.0);
    g.min_core.resize(nodes);
    g.margin = 4.0 * static_cast<double>(points.cols + 8) * std::numeric_limits<double>::epsilon();
    std::vector<int64_t> heads{2 * n - 2};
    for (int64_t x = n; x < 2 * n - 1; ++x) {
        const int64_t big = heavy_child(g, o, x);
        heads.push_back(big == g.left[x - n] ? g.right[x - n] : g.left[x - n]);
    }
    int64_t n_centroids = 0;
    for (const int64_t h : heads) n_centroids += o.size[h] >= kCentroidMin ? 1 : 0;
    g.centroids.reserve(static_cast<size_t>(n_centroids * points.cols));
    for (const int64_t h : heads) {
        annotate_path(points, o, h, o.size[h] >= kCentroidMin ? add_centroid(points, o, h, g) : nullptr, g);
    }
    for (int64_t x = 0; x < n; ++x) g.min_core[x] = core[x];
    for (int64_t i = 0; i < n - 1; ++i) {
        const int64_t a = g.left[i], b = g.right[i], x = n + i;
        g.min_core[x] = std::min(g.min_core[a], g.min_core[b]);
        for (const int64_t child : {a, b}) {
            if (g.center[child] != g.center[x]) g.link[child] = euclidean_distance(g.center[x], g.center[child], points.cols);
        }
    }
    return g;
}

/// One node of the depth-first search of one new point.
struct Frame {
    int64_t node;
    double emit_bound;    // emit the node's best point when height < weight <= emit_bound
    double search_bound;  // only points of weight <= search_bound are looked for
    double lower;         // lower bound of the weights in the node
    const double* parent_center;  // the parent's center
    double parent_dp;     // distance from p to it
    int phase;
    int64_t far;
    double far_lower;
    double dp;            // distance from p to this node's center
    double near_w;
    int64_t near_q;
};

class BridgeSearch {
public:
    BridgeSearch(const PointsView& points, const std::vector<double>& core, const MetricDendrogram& g)
        : points_(points), core_(core), g_(g) {}

    /// Appends the kept edges (q, p) of new point p to `out`.
    void run(int64_t p, std::vector<MstEdge>& out) {
        p_ = p;
        core_p_ = core_[p];
        const int64_t root = 2 * g_.n - 2;
        const double root_dp = euclidean_distance(points_.row(p), g_.center[root], points_.cols);
        stack_.clear();
        push(root, kInf, kInf, core_p_, g_.center[root], root_dp);
        while (!stack_.empty()) step(out);
    }

private:
    /// d(p, q) >= d(p, c) - outer and >= inner - d(p, c) for q in the child (center c), and
    /// d(p, c) lies within parent_dp +- link by the triangle inequality.
    double lower_of(int64_t child, double parent_dp) const noexcept {
        const double link = g_.link[child], outer = g_.outer[child];
        double geometric = std::max(std::abs(parent_dp - link) - outer, g_.inner[child] - (parent_dp + link));
        geometric -= g_.margin * (parent_dp + link + outer);
        return std::max({core_p_, g_.min_core[child], geometric});
    }

    void push(int64_t node, double emit_bound, double search_bound, double lower, const double* parent_center,
              double parent_dp) {
        stack_.push_back(
            Frame{node, emit_bound, search_bound, lower, parent_center, parent_dp, 0, -1, kInf, 0.0, kInf, -1});
    }

    void finish(double w, int64_t q) {
        stack_.pop_back();
        ret_w_ = w;
        ret_q_ = q;
    }

    /// Enters a frame: prunes it by its bound or finds its center's distance.
    bool enter(Frame& f) {
        if (f.lower > f.search_bound) return false;
        const double* c = g_.center[f.node];
        f.dp = c == f.parent_center ? f.parent_dp : euclidean_distance(points_.row(p_), c, points_.cols);
        return true;
    }

    void step(std::vector<MstEdge>& out) {
        Frame& f = stack_.back();
        if (f.phase == 0 && !enter(f)) return finish(kInf, -1);
        if (f.node < g_.n) return leaf(f, out);
        const int64_t i = f.node - g_.n;
        const double h = g_.height[i];
        if (f.phase == 0) {
            int64_t near = g_.left[i], far = g_.right[i];
            double near_lower = lower_of(near, f.dp), far_lower = lower_of(far, f.dp);
            if (far_lower < near_lower) { std::swap(near, far); std::swap(near_lower, far_lower); }
            f.phase = 1;
            f.far = far;
            f.far_lower = far_lower;
            const double search = f.search_bound, dp = f.dp;
            return push(near, h, search, near_lower, g_.center[f.node], dp);  // invalidates f
        }
        if (f.phase == 1) {
            f.near_w = ret_w_;
            f.near_q = ret_q_;
            f.phase = 2;
            const double bound = std::max(std::min(f.search_bound, ret_w_), h);
            const int64_t far = f.far;
            const double far_lower = f.far_lower, dp = f.dp;
            return push(far, h, bound, far_lower, g_.center[f.node], dp);  // invalidates f
        }
        double w = ret_w_;
        int64_t q = ret_q_;
        if (f.near_q >= 0 && (q < 0 || f.near_w < w || (f.near_w == w && f.near_q < q))) { w = f.near_w; q = f.near_q; }
        if (q >= 0 && h < w && w <= f.emit_bound) out.push_back(MstEdge{q, p_, w});
        finish(w, q);
    }

    void leaf(const Frame& f, std::vector<MstEdge>& out) {
        const int64_t q = f.node;
        const double* x = points_.row(q);
        const double d = g_.center[q] == x ? f.dp : euclidean_distance(points_.row(p_), x, points_.cols);
        const double w = std::max({core_p_, core_[q], d});  // the bit-defined weight
        if (!(w <= f.search_bound)) return finish(kInf, -1);
        if (w <= f.emit_bound) out.push_back(MstEdge{q, p_, w});
        finish(w, q);
    }

    const PointsView& points_;
    const std::vector<double>& core_;
    const MetricDendrogram& g_;
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
    const MetricDendrogram g = build_dendrogram(points, n_old, core, tree);
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
