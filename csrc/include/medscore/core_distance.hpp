// Stage 1 of docs/SPEC.md: exact k-nearest neighbours and core distances.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/matrix.hpp"

namespace medscore {

/// Exact k nearest other points of every point.
struct Neighbors {
    int64_t k = 0;
    std::vector<int64_t> indices;   ///< [N * k], row i ordered by (distance, index)
    std::vector<double> distances;  ///< [N * k], bit-defined Euclidean distances
};

/// Effective neighbour count: min(min_samples, N - 1), and 1 if that is 0.
int64_t effective_min_samples(int64_t min_samples, int64_t n_points);

/// Exact k nearest neighbours of each row of `points` among the other rows (1 <= k <= N-1).
/// n_threads = 0 uses every hardware thread.
Neighbors nearest_neighbors(const PointsView& points, int64_t k, int n_threads = 0);

/// Core distances [N]: distance to the effective_min_samples-th nearest other point.
/// For N == 1 the result is {0.0}.
std::vector<double> core_distances(const PointsView& points, int64_t min_samples, int n_threads = 0);

}  // namespace medscore
