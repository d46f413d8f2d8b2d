// Candidate edges from appended points to the old ones (see medscore/incremental.hpp).
//
// T is an MST of the old points, and its single-linkage tree has node n + i for edge i. For
// a new point p, the edge (q, p) of weight W is left out of MST(T + edges of p) exactly when
// some q' in A_q(W) (the largest tree node holding q whose height is < W) comes before it in
// (weight, index) order: q and q' are joined by T edges lighter than W, so (q, p) is the
// heaviest edge of a cycle. The search below emits exactly the other edges: q is emitted at
// node A when q is the (weight, index)-smallest point of A and height(A) < W <= height(parent).
//
// Range filter: let q0 be any old point, w0 = W(q0, p) and R = max(w0, height of T's root).
// An edge (q, p) with W > R is the strictly heaviest edge of the cycle q ~T~ q0 - p (every
// T edge weighs at most the root height), so it is in no MST of T + edges of p and the search
// gives the same edges without it. Only old points with W <= R, hence Euclidean distance <= R,
// are looked at: a kd-tree range search with exact lower bounds finds them, and their weights
// are bit-defined. (In blobs R is the largest gap between clusters, so this skips the other
// clusters: about 10x fewer distances with 10 blobs.) The tree walk then only enters the
// dendrogram nodes above those points; the others hold no edge of weight <= R.
//
// Second filter, per point: q0 (the lightest old point) "beats" q when minimax_T(q, q0) < W
// and (w0, q0) < (W, q), and the rule then leaves (q, p) out. Dropping such q (and every q
// with W > R, beaten by q0 as well) leaves the rule's answer unchanged, because q0 stays and
// beats whatever a dropped q beat: if q beats r, then minimax_T(r, q0) <= max(minimax_T(r, q),
// minimax_T(q, q0)) < max(W(r), W(q)) = W(r) and (w0, q0) < (W(q), q) < (W(r), r). Only a
// sufficient test is used: q lies in an ancestor A of q0's leaf (a preorder range) with
// height(A) < W and w0 < W, for a few such A found by binary lifting. In blobs this drops
// most of the ~N/10 old points of p's blob before the dendrogram walk. (An exact test against
// q0's whole ancestor chain cost more than it saved: the chain is thousands of nodes deep.)
//
// (Bounds from the dendrogram as a metric tree, without touching the points, were tried: in
// 32 dimensions they prune almost nothing, because the distances within and between blobs
// concentrate.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/incremental.hpp"
#include "medscore/kdtree.hpp"
#include "medscore/thread_pool.hpp"
#include "medscore/union_find.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The single-linkage tree of a sorted spanning tree, nodes numbered in depth-first preorder
/// (root 0, left subtree first): a subtree, e.g. a cluster, is one contiguous range, so the
/// per-point searches touch memory in few places. Internal nodes are the tree's edges, with
/// the edge weight as height.
struct Dendrogram {
    int64_t n = 0;
    std::vector<int64_t> left, right;  // [2n - 1] children, -1 for a leaf
    std::vector<int64_t> point;        // [2n - 1] the row of a leaf, -1 for an internal node
    std::vector<double> height;        // [2n - 1] (0 for a leaf)
    std::vector<int64_t> parent;       // [2n - 1] -1 for the root
    std::vector<int64_t> leaf_of;      // [n] row -> its leaf
    std::vector<int64_t> end;          // [2n - 1] the subtree of node x is the ids [x, end[x])
    /// jump[j * (2n - 1) + x]: the 2^j-th ancestor of x (-1 above the root), for the search of
    /// the largest ancestor below a height in O(log n).
    std::vector<int32_t> jump;
    int levels = 0;
    double root_height = 0.0;
};

Dendrogram dendrogram_of(const std::vector<MstEdge>& tree, int64_t n) {
    // Merge order first (node n + i joins edge i's components), then the preorder renumbering.
    UnionFind sets(n);
    std::vector<int64_t> node_of(static_cast<size_t>(n)), kids(static_cast<size_t>(2 * (n - 1)));
    for (int64_t i = 0; i < n; ++i) node_of[i] = i;
    for (int64_t i = 0; i < n - 1; ++i) {
        const int64_t ru = sets.find(tree[i].u), rv = sets.find(tree[i].v);
        if (ru == rv) throw std::logic_error("bridge_edges: the old tree has a cycle");
        kids[2 * i] = node_of[ru];
        kids[2 * i + 1] = node_of[rv];
        sets.unite(ru, rv);
        node_of[sets.find(ru)] = n + i;
    }
    Dendrogram g;
    g.n = n;
    const auto m = static_cast<size_t>(2 * n - 1);
    g.left.assign(m, -1);
    g.right.assign(m, -1);
    g.point.assign(m, -1);
    g.height.assign(m, 0.0);
    g.parent.assign(m, -1);
    g.leaf_of.resize(static_cast<size_t>(n));
    g.root_height = n > 1 ? tree[n - 2].weight : 0.0;
    std::vector<std::pair<int64_t, int64_t>> stack{{2 * n - 2, -1}};  // (merge-order node, parent id)
    for (int64_t id = 0; !stack.empty(); ++id) {
        const auto [x, up] = stack.back();
        stack.pop_back();
        g.parent[id] = up;
        if (up >= 0) (g.left[up] < 0 ? g.left[up] : g.right[up]) = id;
        if (x < n) {
            g.point[id] = x;
            g.leaf_of[x] = id;
            continue;
        }
        g.height[id] = tree[x - n].weight;
        stack.emplace_back(kids[2 * (x - n) + 1], id);
        stack.emplace_back(kids[2 * (x - n)], id);  // popped first: the left child gets id + 1
    }
    g.end.resize(m);
    for (auto x = static_cast<int64_t>(m) - 1; x >= 0; --x) {  // children have larger ids
        g.end[x] = g.left[x] < 0 ? x + 1 : g.end[g.right[x]];
    }
    while ((int64_t{1} << g.levels) < static_cast<int64_t>(m)) ++g.levels;
    g.jump.resize(m * static_cast<size_t>(std::max(g.levels, 1)));
    for (size_t x = 0; x < m; ++x) g.jump[x] = static_cast<int32_t>(g.parent[x]);
    for (int j = 1; j < g.levels; ++j) {
        const int32_t* below = g.jump.data() + (j - 1) * m;
        int32_t* level = g.jump.data() + j * m;
        for (size_t x = 0; x < m; ++x) level[x] = below[x] < 0 ? -1 : below[below[x]];
    }
    return g;
}

/// The largest ancestor of node x (x included) with height < h, or -1 if x's height >= h.
int64_t highest_below(const Dendrogram& g, int64_t x, double h) {
    if (!(g.height[x] < h)) return -1;
    const auto m = static_cast<size_t>(2 * g.n - 1);
    for (int j = g.levels - 1; j >= 0; --j) {
        const int32_t y = g.jump[j * m + x];
        if (y >= 0 && g.height[y] < h) x = y;  // heights never decrease going up
    }
    return x;
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

/// The old rows within distance R_p = max(W(q0, p), height of the old tree's root) of new row
/// p, for a nearby old q0 (see the file comment): a kd-tree range search with exact bounds.
class NearbyOld {
public:
    NearbyOld(const PointsView& points, int64_t n_old, const std::vector<double>& core, const KdTree& kd,
              double root_height)
        : points_(points), n_old_(n_old), core_(core), kd_(kd), root_height_(root_height) {}

    void run(int64_t p, std::vector<std::pair<double, int64_t>>& out) {
        const int64_t pos = kd_.position(p);
        const double range = std::max(nearby_weight(p, pos), root_height_);
        const auto& nodes = kd_.nodes();
        const double* rows[KdTree::kLeafSize];
        int64_t origin[KdTree::kLeafSize];
        double squared[KdTree::kLeafSize];
        stack_.assign(1, 0);
        while (!stack_.empty()) {
            const int32_t id = stack_.back();
            stack_.pop_back();
            if (kd_.lower_bound(pos, id, kInf) > range) continue;  // every point there has d > R_p
            const KdNode& node = nodes[id];
            if (node.left >= 0) {
                stack_.push_back(node.right);
                stack_.push_back(node.left);
                continue;
            }
            int64_t count = 0;
            for (int64_t at = node.start; at < node.end; ++at) {
                if (kd_.original(at) >= n_old_) continue;
                rows[count] = kd_.point(at);
                origin[count++] = kd_.original(at);
            }
            squared_distances(kd_.point(pos), rows, count, points_.cols, squared);
            for (int64_t j = 0; j < count; ++j) {
                const double d = std::sqrt(squared[j]);
                if (d <= range) out.emplace_back(d, origin[j]);
            }
        }
    }

private:
    /// W(q0, p) for the closest old point q0 of the smallest kd-tree node above p holding one.
    double nearby_weight(int64_t p, int64_t pos) {
        const auto& nodes = kd_.nodes();
        path_.assign(1, 0);
        while (nodes[path_.back()].left >= 0) {
            const KdNode& node = nodes[path_.back()];
            path_.push_back(pos < nodes[node.left].end ? node.left : node.right);
        }
        for (auto it = path_.rbegin(); it != path_.rend(); ++it) {
            double best = kInf;
            const KdNode& node = nodes[*it];
            for (int64_t at = node.start; at < node.end && at - node.start < 4096; ++at) {
                const int64_t q = kd_.original(at);
                if (q >= n_old_) continue;
                const double d = std::sqrt(squared_distance(kd_.point(pos), kd_.point(at), points_.cols));
                best = std::min(best, std::max({core_[p], core_[q], d}));
            }
            if (best < kInf) return best;
        }
        return kInf;  // unreachable with n_old >= 1; +inf only disables the filter
    }

    const PointsView& points_;
    int64_t n_old_;
    const std::vector<double>& core_;
    const KdTree& kd_;
    double root_height_;
    std::vector<int32_t> stack_, path_;
};

class BridgeSearch {
public:
    BridgeSearch(const std::vector<double>& core, const Dendrogram& g)
        : core_(core), g_(g), root_height_(g.root_height),
          slots_(static_cast<size_t>(2 * g.n - 1), Slot{kInf, 0}) {}

    /// Appends the kept edges (q, p) of new point p to `out`, given p's old neighbourhood.
    void run(int64_t p, const std::vector<std::pair<double, int64_t>>& near, std::vector<MstEdge>& out) {
        p_ = p;
        core_p_ = core_[p];
        ++generation_;
        in_range_weights(near);
        stack_.clear();
        push(0, kInf, kInf);
        while (!stack_.empty()) step(out);
    }

private:
    /// Bit-defined weight from p to the old point of leaf x, or the smallest one below node x;
    /// +inf for nodes without a point in range (their edges are all heavier than R).
    double lowest(int64_t x) const noexcept { return slots_[x].stamp == generation_ ? slots_[x].lowest : kInf; }

    /// Weights of the old points with W <= R = max(smallest W, root height) (see the file
    /// comment; `near` holds all of them) that the lightest one, q0, does not beat, and the
    /// minima of the dendrogram nodes above them.
    void in_range_weights(const std::vector<std::pair<double, int64_t>>& near) {
        weights_.clear();
        std::pair<double, int64_t> lightest{kInf, -1};
        for (const auto& [d, q] : near) {
            const double w = std::max({core_p_, core_[q], d});
            lightest = std::min(lightest, {w, q});
            weights_.push_back(w);
        }
        const auto [w0, q0] = lightest;
        const double range = std::max(w0, root_height_);
        nearby_clusters(g_.leaf_of[q0], w0, range);
        survivors_.clear();
        for (size_t i = 0; i < near.size(); ++i) {
            const double w = weights_[i];
            if (w > range) continue;
            const int64_t q = near[i].second;
            if (w > w0 && beaten(g_.leaf_of[q], w)) continue;
            survivors_.emplace_back(w, q);
        }
        // The lightest first: its walk up sets every ancestor to the overall minimum, so the
        // others stop early (a walk stops at a node already holding a weight <= its own).
        if (survivors_.empty()) return;
        std::iter_swap(survivors_.begin(), std::min_element(survivors_.begin(), survivors_.end()));
        for (const auto& [w, q] : survivors_) raise_to_root(q, w);
    }

    /// A few ancestors of q0's leaf, smallest first: the largest below heights spaced from w0
    /// to R (any ancestors would do; these split a blob from its neighbours).
    void nearby_clusters(int64_t leaf, double w0, double range) {
        clusters_.clear();
        for (int i = kClusterLevels - 1; i >= 0; --i) {
            const double h = w0 + (range - w0) / static_cast<double>(int64_t{1} << i);
            const int64_t a = highest_below(g_, leaf, h);
            if (a >= 0 && (clusters_.empty() || a != clusters_.back())) clusters_.push_back(a);
        }
    }

    /// True when q0 beats the old point of `leaf` with weight w > w0: the smallest listed
    /// ancestor A of q0 holding it has height(A) < w, so minimax_T(q, q0) <= height(A) < w.
    bool beaten(int64_t leaf, double w) const noexcept {
        for (const int64_t a : clusters_) {
            if (a <= leaf && leaf < g_.end[a]) return g_.height[a] < w;
        }
        return false;
    }

    /// Records weight w of old point q and lowers the minima of its ancestors.
    void raise_to_root(int64_t q, double w) {
        const int64_t leaf = g_.leaf_of[q];
        slots_[leaf] = Slot{w, generation_};
        for (int64_t x = g_.parent[leaf]; x >= 0; x = g_.parent[x]) {
            Slot& slot = slots_[x];
            if (slot.stamp != generation_) {
                slot = Slot{w, generation_};
            } else if (w < slot.lowest) {
                slot.lowest = w;
            } else {
                break;  // this node and all above it already hold something <= w
            }
        }
    }

    void push(int64_t node, double emit_bound, double search_bound) {
        stack_.push_back(Frame{node, emit_bound, search_bound, lowest(node), 0, -1, kInf, -1});
    }

    void finish(double w, int64_t q) {
        stack_.pop_back();
        ret_w_ = w;
        ret_q_ = q;
    }

    void step(std::vector<MstEdge>& out) {
        Frame& f = stack_.back();
        if (f.phase == 0 && (f.lower > f.search_bound || f.lower == kInf)) return finish(kInf, -1);
        if (g_.left[f.node] < 0) return leaf(f, out);
        const double h = g_.height[f.node];
        if (f.phase == 0) {
            int64_t near = g_.left[f.node], far = g_.right[f.node];
            if (lowest(far) < lowest(near)) std::swap(near, far);
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
        const int64_t q = g_.point[f.node];
        const double w = lowest(f.node);
        if (w <= f.emit_bound) out.push_back(MstEdge{q, p_, w});
        finish(w, q);
    }

    const std::vector<double>& core_;
    const Dendrogram& g_;
    double root_height_;
    /// A node's smallest weight, valid for the current point iff stamp == generation_ (one
    /// cache line holds both, and nothing is cleared between points).
    struct Slot {
        double lowest;
        uint32_t stamp;
    };
    std::vector<Slot> slots_;
    uint32_t generation_ = 0;

    std::vector<Frame> stack_;
    std::vector<std::pair<double, int64_t>> survivors_;
    std::vector<double> weights_;
    static constexpr int kClusterLevels = 6;
    std::vector<int64_t> clusters_;  // see nearby_clusters()
    int64_t p_ = 0;
    double core_p_ = 0.0;
    double ret_w_ = kInf;
    int64_t ret_q_ = -1;
};

}  // namespace

std::vector<MstEdge> bridge_edges(int64_t n_old, const std::vector<double>& core, const std::vector<MstEdge>& tree,
                                  const OldNeighborhoods& near, int n_threads) {
    const auto n = static_cast<int64_t>(core.size());
    if (n_old < 1 || n_old > n || static_cast<int64_t>(tree.size()) != n_old - 1 ||
        static_cast<int64_t>(near.size()) != n - n_old) {
        throw std::invalid_argument("bridge_edges: expected 1 <= n_old <= N, a tree of n_old - 1 edges and a "
                                    "neighbourhood per new point");
    }
    for (const auto& list : near) {
        if (list.empty()) throw std::invalid_argument("bridge_edges: a new point without old neighbours");
        for (const auto& [d, q] : list) {
            if (q < 0 || q >= n_old) throw std::invalid_argument("bridge_edges: neighbour is not an old row");
        }
    }
    const int64_t n_new = n - n_old;
    if (n_new == 0) return {};
    const Dendrogram g = dendrogram_of(tree, n_old);
    std::vector<std::vector<MstEdge>> found(static_cast<size_t>(n_new));
    // Searches are reused across chunks: each holds O(n_old) scratch that is not cleared.
    std::vector<std::unique_ptr<BridgeSearch>> idle;
    std::mutex idle_mutex;
    parallel_for(n_new, n_threads, 16, [&](int64_t begin, int64_t end) {
        std::unique_ptr<BridgeSearch> search;
        {
            const std::lock_guard<std::mutex> lock(idle_mutex);
            if (!idle.empty()) { search = std::move(idle.back()); idle.pop_back(); }
        }
        if (!search) search = std::make_unique<BridgeSearch>(core, g);
        for (int64_t j = begin; j < end; ++j) search->run(n_old + j, near[j], found[j]);
        const std::lock_guard<std::mutex> lock(idle_mutex);
        idle.push_back(std::move(search));
    });
    std::vector<MstEdge> edges;
    for (const auto& part : found) edges.insert(edges.end(), part.begin(), part.end());
    return edges;
}

std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, const KdTree& kd, int n_threads) {
    check_points(points, "bridge_edges");
    if (n_old < 1 || n_old > points.rows || static_cast<int64_t>(tree.size()) != n_old - 1 ||
        static_cast<int64_t>(core.size()) != points.rows || kd.size() != points.rows || kd.dim() != points.cols) {
        throw std::invalid_argument("bridge_edges: expected 1 <= n_old <= N, a tree of n_old - 1 edges, N core "
                                    "distances and a kd-tree of the N points");
    }
    const int64_t n_new = points.rows - n_old;
    OldNeighborhoods near(static_cast<size_t>(n_new));
    const double root_height = n_old > 1 ? tree.back().weight : 0.0;
    parallel_for(n_new, n_threads, 16, [&](int64_t begin, int64_t end) {
        NearbyOld search(points, n_old, core, kd, root_height);
        for (int64_t j = begin; j < end; ++j) search.run(n_old + j, near[j]);
    });
    return bridge_edges(n_old, core, tree, near, n_threads);
}

std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, int n_threads) {
    check_points(points, "bridge_edges");
    return bridge_edges(points, n_old, core, tree, KdTree(points), n_threads);
}

}  // namespace medscore
