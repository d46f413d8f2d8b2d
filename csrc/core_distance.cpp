// Stage 1 of docs/SPEC.md: exact k nearest neighbours by kd-tree search.
#include "medscore/core_distance.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/knn.hpp"
#include "medscore/neighbor_heap.hpp"
#include "medscore/thread_pool.hpp"

namespace medscore {
namespace {

constexpr int64_t kMaxLeaf = KdTree::kLeafSize;

void scan_leaf(const KdTree& tree, const KdNode& leaf, int64_t query_pos, NeighborHeap& heap) {
    const double* rows[kMaxLeaf] = {};
    double squared[kMaxLeaf];
    int64_t count = 0;
    for (int64_t pos = leaf.start; pos < leaf.end; ++pos) {
        if (pos != query_pos) rows[count++] = tree.point(pos);
    }
    squared_distances(tree.point(query_pos), rows, count, tree.dim(), squared);
    for (int64_t j = 0, pos = leaf.start; j < count; ++j, ++pos) {
        if (pos == query_pos) ++pos;
        const double dist = std::sqrt(squared[j]);
        if (dist <= heap.bound()) heap.offer({dist, tree.original(pos)});
    }
}

/// Exact k nearest other points of tree position `query_pos`, sorted by (distance, row).
const std::vector<Neighbor>& query_neighbors(const KdTree& tree, int64_t query_pos, int64_t k, NeighborHeap& heap,
                                             std::vector<std::pair<double, int32_t>>& stack) {
    heap.reset(k);
    const auto& nodes = tree.nodes();
    stack.clear();
    stack.emplace_back(0.0, 0);
    while (!stack.empty()) {
        const auto [lower, id] = stack.back();
        stack.pop_back();
        // Ties at the bound may still win on the row index, so prune only strictly above.
        if (lower > heap.bound()) continue;
        const KdNode& node = nodes[id];
        if (node.left < 0) {
            scan_leaf(tree, node, query_pos, heap);
            continue;
        }
        const double left = tree.lower_bound(query_pos, node.left, heap.bound());
        const double right = tree.lower_bound(query_pos, node.right, heap.bound());
        // Push the farther child first so that the nearer one is searched first.
        if (left <= right) {
            stack.emplace_back(right, node.right);
            stack.emplace_back(left, node.left);
        } else {
            stack.emplace_back(left, node.left);
            stack.emplace_back(right, node.right);
        }
    }
    return heap.sorted();
}

/// Calls out(row, sorted neighbours) for the point at each tree position of [0, count) mapped
/// by `position_of`, from `n_threads` threads.
template <class PositionOf, class Out>
void query_all(const KdTree& tree, int64_t count, int64_t k, int n_threads, PositionOf position_of, Out out) {
    parallel_for(count, n_threads, 256, [&](int64_t begin, int64_t end) {
        std::vector<std::pair<double, int32_t>> stack;
        NeighborHeap heap;
        for (int64_t i = begin; i < end; ++i) out(i, query_neighbors(tree, position_of(i), k, heap, stack));
    });
}

}  // namespace

int64_t effective_min_samples(int64_t min_samples, int64_t n_points) {
    if (min_samples < 1) {
        throw std::invalid_argument("min_samples must be >= 1, got " + std::to_string(min_samples));
    }
    if (n_points < 1) throw std::invalid_argument("need at least one point, got " + std::to_string(n_points));
    return std::max<int64_t>(1, std::min(min_samples, n_points - 1));
}

Neighbors nearest_neighbors(const KdTree& tree, int64_t k, int n_threads) {
    const int64_t n = tree.size();
    if (k < 1 || k > n - 1) {
        throw std::invalid_argument("nearest_neighbors: k must be in [1, N - 1] = [1, " +
                                    std::to_string(n - 1) + "], got " + std::to_string(k));
    }
    Neighbors result;
    result.k = k;
    result.indices.resize(static_cast<size_t>(n * k));
    result.distances.resize(static_cast<size_t>(n * k));
    query_all(tree, n, k, n_threads, [](int64_t pos) { return pos; }, [&](int64_t pos, const std::vector<Neighbor>& found) {
        const int64_t row = tree.original(pos);
        for (int64_t j = 0; j < k; ++j) {
            result.distances[row * k + j] = found[j].first;
            result.indices[row * k + j] = found[j].second;
        }
    });
    return result;
}

Neighbors nearest_neighbors(const KdTree& tree, const std::vector<int64_t>& rows, int64_t k, int n_threads) {
    if (k < 1 || k > tree.size() - 1) {
        throw std::invalid_argument("nearest_neighbors: k must be in [1, N - 1], got " + std::to_string(k));
    }
    Neighbors result;
    result.k = k;
    result.indices.resize(rows.size() * static_cast<size_t>(k));
    result.distances.resize(rows.size() * static_cast<size_t>(k));
    const auto count = static_cast<int64_t>(rows.size());
    query_all(tree, count, k, n_threads, [&](int64_t i) { return tree.position(rows[i]); },
              [&](int64_t i, const std::vector<Neighbor>& found) {
                  for (int64_t j = 0; j < k; ++j) {
                      result.distances[i * k + j] = found[j].first;
                      result.indices[i * k + j] = found[j].second;
                  }
              });
    return result;
}

Neighbors nearest_neighbors(const PointsView& points, int64_t k, int n_threads) {
    check_points(points, "nearest_neighbors");
    const KdTree tree(points);
    return nearest_neighbors(tree, k, n_threads);
}

std::vector<double> core_distances_of(const Neighbors& neighbors, int64_t n_points) {
    std::vector<double> core(static_cast<size_t>(n_points));
    for (int64_t i = 0; i < n_points; ++i) core[i] = neighbors.distances[(i + 1) * neighbors.k - 1];
    return core;
}

std::vector<double> core_distances(const PointsView& points, int64_t min_samples, int n_threads) {
    check_points(points, "core_distances");
    const int64_t k = effective_min_samples(min_samples, points.rows);
    if (points.rows == 1) return {0.0};
    return core_distances_of(nearest_neighbors(points, k, n_threads), points.rows);
}

}  // namespace medscore
