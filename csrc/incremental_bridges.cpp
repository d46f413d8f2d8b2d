// Candidate edges from appended points to the old ones (see medscore/incremental.hpp).
//
// T is an MST of the old points and bottleneck_T(q, q') the largest edge on T's path between
// them (medscore/dendrogram.hpp). For a new point p, the edge (q, p) of weight W is the
// heaviest edge of a cycle, so in no MST of T + edges of p, when some old q' with
// (W', q') < (W, q) in (weight, index) order has bottleneck_T(q, q') < W: say q' beats q.
// MST(T + edges of p) keeps exactly the edges of the q that nobody beats.
//
// The search returns the edges of p whose q is not beaten by q0, the lightest old point (in
// (weight, index) order; nobody beats it): every kept edge, and in practice hardly any other
// (1,024 points inserted into 100,000 in 32 dimensions: 5,553 returned for 5,534 kept). The
// caller's Kruskal over T and these candidates discards the few extra ones. The test is exact:
// the bottleneck is the height of the lowest ancestor of q0's leaf holding q's, found by a
// binary search over q0's ancestor chain, after a cheap upper bound from a few of them.
//
// Range filter: let w0 = W(q0, p) and R = max(w0, height of T's root). An edge with W > R is
// beaten by q0 (every T path weighs at most the root height), so only old points with
// W <= R, hence Euclidean distance <= R, are looked at: a kd-tree range search with exact
// lower bounds finds them. (In blobs R is the largest gap between clusters, so this skips the
// other clusters.) A caller may also leave out points that another point it keeps beats: if
// q' beats q and q beats r, then q' beats r (bottleneck_T(r, q') <= max(bottleneck_T(r, q),
// bottleneck_T(q, q')) < max(W(r), W(q)) = W(r), and (W', q') < (W, q) < (W(r), r)), so no
// unbeaten point is lost and q0 stays the lightest.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medscore/dendrogram.hpp"
#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/incremental.hpp"
#include "medscore/kdtree.hpp"
#include "medscore/thread_pool.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

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

/// The candidate edges of one new point from its old neighbourhood (see the file comment).
class BridgeFilter {
public:
    BridgeFilter(const std::vector<double>& core, const Dendrogram& g) : core_(core), g_(g) {}

    void run(int64_t p, const std::vector<std::pair<double, int64_t>>& near, std::vector<MstEdge>& out) {
        weights_.clear();
        std::pair<double, int64_t> lightest{kInf, -1};
        for (const auto& [d, q] : near) {
            const double w = std::max({core_[p], core_[q], d});
            lightest = std::min(lightest, {w, q});
            weights_.push_back(w);
        }
        const auto [w0, q0] = lightest;
        const double range = std::max(w0, g_.root_height());
        chain_.assign(g_, q0, w0, range);
        for (size_t i = 0; i < near.size(); ++i) {
            const double w = weights_[i];
            const int64_t q = near[i].second;
            if (w > range) continue;
            // Only q0 itself is not after q0 in (weight, index) order.
            if (q != q0 && chain_.bottleneck_below(g_, q, w)) continue;
            out.push_back(MstEdge{q, p, w});
        }
    }

private:
    const std::vector<double>& core_;
    const Dendrogram& g_;
    std::vector<double> weights_;
    AncestorChain chain_;
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
    parallel_for(n_new, n_threads, 16, [&](int64_t begin, int64_t end) {
        BridgeFilter filter(core, g);
        for (int64_t j = begin; j < end; ++j) filter.run(n_old + j, near[j], found[j]);
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
