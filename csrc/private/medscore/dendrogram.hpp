// Single-linkage tree of a spanning tree, for bottleneck (minimax) queries (private to csrc/: under csrc/private, never installed).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// The single-linkage tree of a spanning tree sorted by (weight, u, v): leaves are the points,
/// internal nodes the edges (their weight is the node's height). Nodes are numbered in
/// depth-first preorder with the larger child first, so a subtree is one contiguous range of
/// ids ("x is below a" is two comparisons) and every heavy path (from a node through its
/// larger children) is a run of consecutive ids: a leaf's ancestors are a few such runs. The
/// bottleneck distance between two points (the largest edge on their tree path) is the height
/// of their lowest common ancestor.
struct Dendrogram {
    int64_t n = 0;
    std::vector<int64_t> parent;   ///< [2n - 1], -1 for the root (id 0)
    std::vector<double> height;    ///< [2n - 1], 0 for a leaf; never decreases going up
    std::vector<int64_t> end;      ///< [2n - 1], the subtree of x is the ids [x, end[x])
    std::vector<int64_t> head;     ///< [2n - 1], top of x's heavy path (x's ancestors head..x)
    std::vector<int64_t> leaf_of;  ///< [n], point -> its leaf

    double root_height() const noexcept { return n > 1 ? height[0] : 0.0; }
};

/// The dendrogram of `tree`, a spanning tree of n points sorted by (weight, u, v).
/// Throws std::logic_error if `tree` has a cycle.
Dendrogram dendrogram_of(const std::vector<MstEdge>& tree, int64_t n);

/// The ancestors of one point's leaf, as runs of a heavy path each: exact bottleneck distances
/// from that point to any other. For many tests "bottleneck < d" with d in [lo, hi], a grid
/// over that interval holds, per grid value e, the highest ancestor of height < e; most tests
/// are then decided by two range checks, the others by a binary search within a run.
class AncestorChain {
public:
    /// Rebuilds the chain for `point` and its grid over [lo, hi] (O(runs * log + grid);
    /// buffers are reused between calls).
    void assign(const Dendrogram& g, int64_t point, double lo, double hi);

    /// Exactly bottleneck(g, point) < d.
    bool bottleneck_below(const Dendrogram& g, int64_t point, double d) const noexcept {
        const int64_t leaf = g.leaf_of[point];
        return leaves_below(leaf, leaf, d);
    }

    /// Exactly: the bottleneck distance from the chain's point to every leaf with an id in
    /// [first, last] is < d (the highest ancestor of height < d holds them all).
    bool leaves_below(int64_t first, int64_t last, double d) const noexcept {
        if (d >= lo_ && d <= hi_) {
            const auto c = std::min(kGrid - 1, static_cast<int64_t>((d - lo_) * inv_step_));
            // An ancestor of height < edge <= d holds them: below. One of them outside every
            // ancestor of height < edge, with d <= edge: not below.
            if (edge_[c] <= d && grid_begin_[c] <= first && last < grid_end_[c]) return true;
            if (d <= edge_[c + 1] && !(grid_begin_[c + 1] <= first && last < grid_end_[c + 1])) return false;
        }
        return leaf_bottleneck(first) < d && leaf_bottleneck(last) < d;
    }

    /// The smallest grid value e such that the bottleneck distance from the chain's point to
    /// every leaf with an id in [first, last] is < e; +inf if no grid value bounds them all.
    double range_bound(int64_t first, int64_t last) const noexcept {
        auto holds = [&](int64_t c) { return grid_begin_[c] <= first && last < grid_end_[c]; };
        if (edge_.empty() || !holds(kGrid)) return std::numeric_limits<double>::infinity();
        int64_t lo = 0, hi = kGrid;  // holds(hi); the ranges grow with c
        while (lo < hi) {
            const int64_t mid = (lo + hi) / 2;
            if (holds(mid)) hi = mid; else lo = mid + 1;
        }
        return edge_[lo];
    }

private:
    /// Height of the lowest ancestor of the chain's leaf whose subtree holds leaf id `leaf`.
    double leaf_bottleneck(int64_t leaf) const noexcept;
    /// The highest ancestor of height < e, or -1 if none (the leaf itself has height 0).
    int64_t highest_below(double e) const noexcept;

    static constexpr int64_t kGrid = 128;
    const Dendrogram* g_ = nullptr;
    std::vector<int64_t> run_top_, run_bottom_;  // ancestors: runs [top, bottom] of ids, leaf's run first
    double lo_ = 1.0, hi_ = 0.0, inv_step_ = 0.0;  // an empty interval until assign()
    std::vector<double> edge_;                    // [kGrid + 1] grid values
    std::vector<int64_t> grid_begin_, grid_end_;  // [kGrid + 1] highest ancestor of height < edge
};

}  // namespace medscore
