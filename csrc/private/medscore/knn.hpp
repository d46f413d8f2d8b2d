// Tree-based entry points shared by the stages inside csrc/ (not part of the public API).
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/core_distance.hpp"
#include "medscore/kdtree.hpp"
#include "medscore/types.hpp"

namespace medscore {

/// Exact k nearest other points of every point of `tree` (rows in original order).
Neighbors nearest_neighbors(const KdTree& tree, int64_t k, int n_threads);

/// Exact k nearest other points of the points `rows` (original row numbers) of `tree`: row i
/// of the result is rows[i]'s. Throws std::invalid_argument unless 1 <= k <= N - 1.
Neighbors nearest_neighbors(const KdTree& tree, const std::vector<int64_t>& rows, int64_t k, int n_threads);

/// Core distances [n_points]: the last distance of each neighbour row.
std::vector<double> core_distances_of(const Neighbors& neighbors, int64_t n_points);

/// Exact MST (see minimum_spanning_tree) over a built tree. `seeds`, if not null, are the
/// nearest neighbours of every point; they give each Boruvka round good first bounds.
std::vector<MstEdge> minimum_spanning_tree(const KdTree& tree, const std::vector<double>& core,
                                           int n_threads, const std::vector<MstEdge>* initial_forest,
                                           const Neighbors* seeds);

}  // namespace medscore
