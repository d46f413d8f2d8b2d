// Native kernels of the exact incremental HDBSCAN engine (medscore/incremental.py).
//
// The state of a memory of N points is its neighbour graph (each point's k nearest other
// points by (distance, index), docs/SPEC.md stage 1), the core distances, and a
// mutual-reachability MST (stage 2). insert_rows() repairs that state after rows are
// appended, exactly: the result has the same neighbour lists and core distances as a refit
// and an MST of the same weights (any MST under ties, as the SPEC allows).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "medscore/matrix.hpp"
#include "medscore/types.hpp"

namespace medscore {

class KdTree;

/// Neighbour lists, core distances and MST of a memory's points.
struct IncrementalGraph {
    int64_t k = 0;                    ///< neighbours per point (the effective min_samples)
    std::vector<int64_t> knn_index;   ///< [N * k], row i sorted by (distance, index)
    std::vector<double> knn_dist;     ///< [N * k], bit-defined distances
    std::vector<double> core;         ///< [N], core[i] = knn_dist[i * k + k - 1]
    std::vector<MstEdge> mst;         ///< [N - 1], sorted by (weight, u, v), u < v
};

/// The graph of all rows of `points` given `old`, the graph of its first `n_old` rows.
/// Requires 1 <= k <= n_old - 1 (k does not change) and n_old < points.rows.
/// Throws std::invalid_argument on inconsistent sizes.
IncrementalGraph insert_rows(const PointsView& points, int64_t n_old, const IncrementalGraph& old,
                             int n_threads = 0);

/// insert_rows() with `tree`, a kd-tree over all rows of `points` (KdTree::insert() keeps one
/// up to date between inserts instead of building it each time).
IncrementalGraph insert_rows(const PointsView& points, int64_t n_old, const IncrementalGraph& old, const KdTree& tree,
                             int n_threads = 0);

/// Exact k nearest other rows of each of `rows` among all rows of `points`, by
/// (distance, index): indices and distances [rows.size() * k]. Requires k <= N - 1.
void nearest_neighbors_of_rows(const PointsView& points, const std::vector<int64_t>& rows, int64_t k,
                               std::vector<int64_t>& indices, std::vector<double>& distances, int n_threads = 0);

/// Candidate edges between the appended rows [n_old, N) and the old rows [0, n_old): for each
/// new row p, every edge (q, p) that the MST of `tree` + every edge of p keeps (the others are
/// the strictly heaviest edge of a cycle under the (weight, u, v) order), plus the few others
/// that the lightest old point alone does not rule out; weights are bit-defined. `tree` is an
/// MST of the old rows under `core` (new core distances of all N rows), sorted by (weight, u, v).
std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, int n_threads = 0);

/// Old rows near each new row, with bit-defined Euclidean distances: `near[j]` lists (distance,
/// old row) pairs for new row n_old + j, in any order.
using OldNeighborhoods = std::vector<std::vector<std::pair<double, int64_t>>>;

/// bridge_edges() from precomputed neighbourhoods: `near[j]` must be non-empty and hold every
/// old row q with distance <= max(min W over near[j], height of the root of `tree`), where
/// W(q, p) = max(core[p], core[q], distance), except rows that a row it holds rules out
/// (csrc/incremental_bridges.cpp). (insert_rows() gathers them in the same kd-tree pass as the
/// reverse neighbours.) Throws std::invalid_argument on inconsistent sizes.
std::vector<MstEdge> bridge_edges(int64_t n_old, const std::vector<double>& core, const std::vector<MstEdge>& tree,
                                  const OldNeighborhoods& near, int n_threads = 0);

struct Dendrogram;

/// bridge_edges() from precomputed neighbourhoods (as above, unchecked) and the dendrogram of
/// `tree` (medscore/dendrogram.hpp), when the caller has already built it.
std::vector<MstEdge> bridge_edges(const Dendrogram& tree_dendrogram, const std::vector<double>& core,
                                  const OldNeighborhoods& near, int n_threads = 0);

/// bridge_edges() with a kd-tree `kd` already built over all rows of `points`.
std::vector<MstEdge> bridge_edges(const PointsView& points, int64_t n_old, const std::vector<double>& core,
                                  const std::vector<MstEdge>& tree, const KdTree& kd, int n_threads = 0);

}  // namespace medscore
