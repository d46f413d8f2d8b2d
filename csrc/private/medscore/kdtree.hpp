// kd-tree over float64 points with exact, bit-compatible lower bounds (private to csrc/: under csrc/private, never installed).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "medscore/matrix.hpp"
#include "medscore/projection.hpp"

namespace medscore {

/// A node covers the tree-order positions [start, end); `left` is -1 for a leaf, else the
/// children are `left` and `right` (both with larger node ids than the parent: preorder).
struct KdNode {
    int64_t start;
    int64_t end;
    int32_t left;
    int32_t right;
};

/// A kd-tree that keeps a copy of the points in tree order ("positions"), so that the points
/// of a node are contiguous in memory. Splits are at the median of the widest coordinate.
///
/// In more than kProjectAbove dimensions the tree is built over the points' coordinates in
/// their top principal subspace: an orthonormal projection never lengthens a vector, so
/// box distances there (minus rounding margins) still bound the Euclidean distance from
/// below, and they separate clusters far better than boxes in 64 raw coordinates.
class KdTree {
public:
    static constexpr int64_t kProjectAbove = 16;
    static constexpr int64_t kLeafSize = 32;

    /// Builds the tree over `points` (copied). Leaves hold at most `leaf_size` (<= kLeafSize) points.
    explicit KdTree(const PointsView& points, int64_t leaf_size = kLeafSize);

    /// Makes this the tree of all rows of `points`, whose first size() rows are the tree's
    /// points (same values) and whose other rows are new: each new row joins the leaf it
    /// descends to (nearest child box), growing the boxes on its path. Returns false and
    /// changes nothing when a leaf would then exceed kLeafSize (build a new tree instead).
    /// If it throws (out of memory), the tree is no longer usable.
    /// Lower bounds stay exact: boxes contain their points, and in projected mode the same
    /// basis is used with the rounding slack widened to the largest norm seen.
    bool insert(const PointsView& points);

    int64_t size() const noexcept { return n_; }
    int64_t dim() const noexcept { return d_; }
    const double* point(int64_t pos) const noexcept { return points_.data() + pos * d_; }
    /// Original row index of tree position `pos`.
    int64_t original(int64_t pos) const noexcept { return index_[pos]; }
    /// Tree position of original row `row`.
    int64_t position(int64_t row) const noexcept { return position_[row]; }
    const std::vector<KdNode>& nodes() const noexcept { return nodes_; }

    /// A lower bound of euclidean_distance(point(pos), p) for every point p of `node`: never
    /// above the bit-defined value. Returns +inf as soon as it is known to exceed `bound`.
    double lower_bound(int64_t pos, int32_t node, double bound) const noexcept;

    /// Tree coordinates of up to kBlock query positions, laid out for lower_bounds().
    static constexpr int64_t kBlock = 32;
    struct QueryBlock {
        int64_t count = 0;
        std::vector<double> coords;  // [e, kBlock]: coordinate k of query j at k * kBlock + j
    };
    /// Fills `block` with the positions `positions` [count <= kBlock].
    void assign_block(const int64_t* positions, int64_t count, QueryBlock& block) const;
    /// out[j] = a lower bound of euclidean_distance(query j, p) for every point p of `node`
    /// (never above the bit-defined value; lower_bound() without its early exit), for all
    /// queries of the block at once.
    void lower_bounds(const QueryBlock& block, int32_t node, double* out) const noexcept;

private:
    /// Builds node `id` over positions [start, end) and its subtree (the next ids, preorder);
    /// the top `parallel_levels` levels build their right subtree on a second thread.
    void build(int32_t id, int64_t start, int64_t end, int64_t leaf_size, int parallel_levels);
    /// Lane-ordered box bound in raw coordinates; see lower_bound.
    double exact_box_squared(const double* q, int32_t node, double stop_above) const noexcept;

    int64_t n_ = 0;
    int64_t d_ = 0;
    int64_t e_ = 0;                  // dimension of the tree coordinates (d_ or projected)
    bool projected_ = false;
    double coordinate_slack_ = 0.0;  // 2 x rounding error of a projected coordinate
    double bound_scale_ = 1.0;       // (1 - margin) / stretch of the projection
    Projection projection_;          // the basis of the tree coordinates, when projected_
    std::vector<double> points_;     // [n, d] in tree order
    std::vector<double> coords_;     // [n, e] tree coordinates, in tree order (also while building)
    std::vector<double> scratch_;    // [n, e] only while building
    std::vector<int64_t> index_;     // position -> row
    std::vector<int64_t> position_;  // row -> position
    std::vector<KdNode> nodes_;
    std::vector<double> lower_;      // [nodes, e] bounding-box corners in tree coordinates
    std::vector<double> upper_;
};

/// Squared distance like squared_distance(), but it may stop early and return a partial sum
/// once that exceeds `stop_above`. The result equals squared_distance() whenever that is
/// <= stop_above, and is > stop_above otherwise (the lanes only grow, rounding is monotone).
inline double squared_distance_or_above(const double* a, const double* b, int64_t d,
                                        double stop_above) noexcept {
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0;
    int64_t k = 0;
    for (int64_t block_end = 16; k + 4 <= d; block_end += 16) {
        for (; k + 4 <= d && k < block_end; k += 4) {
            const double t0 = a[k] - b[k], t1 = a[k + 1] - b[k + 1];
            const double t2 = a[k + 2] - b[k + 2], t3 = a[k + 3] - b[k + 3];
            l0 += t0 * t0;
            l1 += t1 * t1;
            l2 += t2 * t2;
            l3 += t3 * t3;
        }
        if (k + 4 <= d) {
            const double partial = (l0 + l1) + (l2 + l3);
            if (partial > stop_above) return partial;
        }
    }
    if (k < d) { const double t = a[k] - b[k]; l0 += t * t; ++k; }
    if (k < d) { const double t = a[k] - b[k]; l1 += t * t; ++k; }
    if (k < d) { const double t = a[k] - b[k]; l2 += t * t; }
    return (l0 + l1) + (l2 + l3);
}

/// A squared-distance threshold T for a distance bound `bound`: any squared value s > T has
/// sqrt(s) > bound after rounding. (T >= x*x for x the next double above `bound`.)
inline double squared_prune_threshold(double bound) noexcept {
    if (!(bound < std::numeric_limits<double>::max())) return std::numeric_limits<double>::infinity();
    const double next = std::nextafter(bound, std::numeric_limits<double>::infinity());
    return (next * next) * (1.0 + 4.0 * std::numeric_limits<double>::epsilon());
}

}  // namespace medscore
