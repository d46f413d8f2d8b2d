// kd-tree construction and box bounds; see medscore/kdtree.hpp.
#include "medscore/kdtree.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace medscore {

KdTree::KdTree(const PointsView& points, int64_t leaf_size) : n_(points.rows), d_(points.cols) {
    check_points(points, "KdTree");
    if (leaf_size < 1) throw std::invalid_argument("KdTree: leaf_size must be >= 1");
    index_.resize(static_cast<size_t>(n_));
    std::iota(index_.begin(), index_.end(), int64_t{0});
    nodes_.reserve(static_cast<size_t>(2 * (n_ / leaf_size + 1)));
    build(0, n_, leaf_size, points);
    points_.resize(static_cast<size_t>(n_ * d_));
    position_.resize(static_cast<size_t>(n_));
    for (int64_t pos = 0; pos < n_; ++pos) {
        std::copy(points.row(index_[pos]), points.row(index_[pos]) + d_, points_.begin() + pos * d_);
        position_[index_[pos]] = pos;
    }
}

int32_t KdTree::build(int64_t start, int64_t end, int64_t leaf_size, const PointsView& points) {
    const auto id = static_cast<int32_t>(nodes_.size());
    nodes_.push_back(KdNode{start, end, -1, -1});
    lower_.resize(lower_.size() + static_cast<size_t>(d_), std::numeric_limits<double>::infinity());
    upper_.resize(upper_.size() + static_cast<size_t>(d_), -std::numeric_limits<double>::infinity());
    double* lo = lower_.data() + static_cast<int64_t>(id) * d_;
    double* hi = upper_.data() + static_cast<int64_t>(id) * d_;
    for (int64_t i = start; i < end; ++i) {
        const double* p = points.row(index_[i]);
        for (int64_t k = 0; k < d_; ++k) {
            lo[k] = std::min(lo[k], p[k]);
            hi[k] = std::max(hi[k], p[k]);
        }
    }
    if (end - start <= leaf_size) return id;
    int64_t split_dim = 0;
    for (int64_t k = 1; k < d_; ++k) {
        if (hi[k] - lo[k] > hi[split_dim] - lo[split_dim]) split_dim = k;
    }
    if (!(hi[split_dim] > lo[split_dim])) return id;  // all points equal: keep one leaf
    const int64_t mid = start + (end - start) / 2;
    // Ties on the coordinate are ordered by row so that the tree is deterministic.
    std::nth_element(index_.begin() + start, index_.begin() + mid, index_.begin() + end,
                     [&](int64_t a, int64_t b) {
                         const double pa = points.row(a)[split_dim], pb = points.row(b)[split_dim];
                         return pa < pb || (pa == pb && a < b);
                     });
    const int32_t left = build(start, mid, leaf_size, points);
    const int32_t right = build(mid, end, leaf_size, points);
    nodes_[id].left = left;
    nodes_[id].right = right;
    return id;
}

double KdTree::box_squared_distance(const double* q, int32_t node, double stop_above) const noexcept {
    const double* lo = lower_.data() + static_cast<int64_t>(node) * d_;
    const double* hi = upper_.data() + static_cast<int64_t>(node) * d_;
    // gap_k is the exact negation-free counterpart of a - b in squared_distance: for q below
    // the box, lo - q <= p - q; above it, q - hi <= q - p = -(p - q) bit for bit.
    auto gap = [&](int64_t k) {
        const double below = lo[k] - q[k], above = q[k] - hi[k];
        return below > 0.0 ? below : (above > 0.0 ? above : 0.0);
    };
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t k = 0;
    for (; k + 4 <= d_; k += 4) {
        for (int j = 0; j < 4; ++j) {
            const double t = gap(k + j);
            lanes[j] += t * t;
        }
        if ((k & 15) == 12) {
            const double partial = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
            if (partial > stop_above) return partial;
        }
    }
    for (int j = 0; k < d_; ++k, ++j) {
        const double t = gap(k);
        lanes[j] += t * t;
    }
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

}  // namespace medscore
