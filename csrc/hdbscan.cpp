// The whole batch pipeline of docs/SPEC.md: one kd-tree serves the neighbour search and the
// MST, and the neighbour lists seed the first bounds of every Boruvka round.
#include "medscore/hdbscan.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "medscore/kdtree.hpp"
#include "medscore/knn.hpp"

namespace medscore {
namespace {

void check_params(const HdbscanParams& params) {
    if (params.min_cluster_size < 2) {
        throw std::invalid_argument("min_cluster_size must be >= 2, got " + std::to_string(params.min_cluster_size));
    }
    if (params.min_samples < 1) {
        throw std::invalid_argument("min_samples must be >= 1, got " + std::to_string(params.min_samples));
    }
    if (!std::isfinite(params.epsilon) || params.epsilon < 0.0) {
        throw std::invalid_argument("cluster_selection_epsilon must be finite and >= 0");
    }
    if (params.n_threads < 0) {
        throw std::invalid_argument("n_threads must be >= 0, got " + std::to_string(params.n_threads));
    }
}

}  // namespace

HdbscanResult hdbscan_from_mst(std::vector<double> core, std::vector<MstEdge> mst, int64_t n_points,
                               const HdbscanParams& params) {
    check_params(params);
    if (static_cast<int64_t>(core.size()) != n_points) {
        throw std::invalid_argument("hdbscan_from_mst: core has " + std::to_string(core.size()) + " entries for " +
                                    std::to_string(n_points) + " points");
    }
    HdbscanResult result;
    result.linkage = single_linkage(mst, n_points);
    result.condensed = condense_tree(result.linkage, n_points, params.min_cluster_size);
    result.selection = select_clusters(result.condensed, n_points, params.method, params.allow_single_cluster,
                                       params.epsilon);
    result.core_distances = std::move(core);
    result.mst = std::move(mst);
    return result;
}

HdbscanResult hdbscan(const PointsView& points, const HdbscanParams& params) {
    check_points(points, "hdbscan");
    check_params(params);
    const int64_t n = points.rows;
    if (n == 1) return hdbscan_from_mst({0.0}, {}, 1, params);
    const KdTree tree(points);
    const Neighbors neighbors = nearest_neighbors(tree, effective_min_samples(params.min_samples, n), params.n_threads);
    std::vector<double> core = core_distances_of(neighbors, n);
    std::vector<MstEdge> mst = minimum_spanning_tree(tree, core, params.n_threads, nullptr, &neighbors);
    return hdbscan_from_mst(std::move(core), std::move(mst), n, params);
}

}  // namespace medscore
