// Stage 2 of docs/SPEC.md: exact MST of the mutual-reachability graph.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/matrix.hpp"
#include "medscore/types.hpp"

namespace medscore {

/// Sorts edges by (weight, u, v) after putting u < v in each.
void sort_edges(std::vector<MstEdge>& edges);

/// Exact minimum spanning tree [N - 1] of the complete graph under
/// w(a, b) = max(core[a], core[b], d(a, b)), sorted by sort_edges. `core` has N entries.
/// `initial_forest`, if not null, holds edges known to be in an MST (it must be a forest);
/// the result contains them. n_threads = 0 uses every hardware thread.
std::vector<MstEdge> minimum_spanning_tree(const PointsView& points, const std::vector<double>& core,
                                           int n_threads = 0,
                                           const std::vector<MstEdge>* initial_forest = nullptr);

/// Minimum spanning forest of an explicit edge list over `n_points` vertices (Kruskal),
/// sorted by sort_edges. Used by the incremental engine on candidate edges.
std::vector<MstEdge> spanning_forest_of_edges(std::vector<MstEdge> edges, int64_t n_points);

}  // namespace medscore
