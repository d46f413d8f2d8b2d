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

/// The candidate edges of one new point from its old neighbourhood (see the file comment).
class BridgeFilter {
public:
    BridgeFilter(const std::vector<double>& core, const Dendrogram& g) : core_(core), g_(g) {}

    void run(int64_t p, const std::vector<std::pair<double, int64_t>>& near, std::vector<MstEdge>& out) {
        weights_.clear();
        // The sentinel sorts after every real pair, so q0 is a listed point even when every
        // weight is infinite.
        std::pair<double, int64_t> lightest{kInf, std::numeric_limits<int64_t>::max()};
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
    if (n == n_old) return {};
    return bridge_edges(dendrogram_of(tree, n_old), core, near, n_threads);
}

std::vector<MstEdge> bridge_edges(const Dendrogram& g, const std::vector<double>& core, const OldNeighborhoods& near,
                                  int n_threads) {
    const int64_t n_old = g.n, n_new = static_cast<int64_t>(near.size());
    std::vector<std::vector<MstEdge>> found(static_cast<size_t>(n_new));
    parallel_for(n_new, n_threads, 16, [&](int64_t begin, int64_t end) {
        BridgeFilter filter(core, g);
        for (int64_t j = begin; j < end; ++j) filter.run(n_old + j, near[j], found[j]);
    });
    std::vector<MstEdge> edges;
    for (const auto& part : found) edges.insert(edges.end(), part.begin(), part.end());
    return edges;
}

}  // namespace medscore
