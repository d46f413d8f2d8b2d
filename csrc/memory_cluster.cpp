// The keyed memory's clustering of one key after its MST (see memory_cluster.hpp).
#include "memory_cluster.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medscore/core_distance.hpp"
#include "medscore/linkage.hpp"
#include "medscore/memory.hpp"

namespace medscore {
namespace memory_detail {

Clustering single_point() {
    Clustering c;
    c.labels = {-1};
    c.noise = 1;
    return c;
}

MEDSCORE_TLS_ACCESSOR StageWorkspace& stage_workspace() {
    thread_local StageWorkspace w;
    return w;
}

/// The stages after the MST (linkage, condense, select; docs/SPEC.md) on a sorted MST,
/// then the numbering by earliest member. With `linkage_ready` the workspace's linkage
/// already holds the tree's rows (insert_into_mst built them).
Clustering cluster_from_mst(std::vector<MstEdge> mst, const PointsView& points, const int64_t* steps,
                            const HdbscanParams& params, bool linkage_ready) {
    const int64_t n = points.rows;
    if (n == 1) return single_point();
    StageWorkspace& w = stage_workspace();
    if (!linkage_ready) single_linkage(mst, n, w.link, w.linkage);
    Clustering c;
    if (params.method == SelectionMethod::eom && !params.allow_single_cluster && params.epsilon == 0.0) {
        eom_labels(w.linkage, n, params.min_cluster_size, w.eom, c.labels);
    } else {
        condense_tree(w.linkage, n, params.min_cluster_size, w.condense, w.condensed);
        select_clusters(w.condensed, n, params.method, params.allow_single_cluster, params.epsilon, w.select,
                        w.selection);
        c.labels = w.selection.labels;
    }
    c.sizes = number_clusters(c.labels, points, steps, c.noise);
    c.mst = std::move(mst);
    return c;
}

/// Below this many points a key is refitted by Prim's O(n^2) MST (on mutual reachability
/// when min_samples > 1), which beats building a kd-tree there and gives the one MST that is
/// minimal under (weight, u, v), as the Numba engine does.
constexpr int64_t kPrimMaxPoints = 256;

/// Batch HDBSCAN of `points` on `n_threads` threads (1 when the caller runs keys in parallel).
Clustering refit(const PointsView& points, const int64_t* steps, const HdbscanParams& params, int n_threads) {
    if (points.rows == 0) return Clustering{};
    if (points.rows == 1) return single_point();
    if (points.rows <= kPrimMaxPoints) {
        if (params.min_samples == 1) return cluster_from_mst(euclidean_mst(points), points, steps, params);
        const std::vector<double> core = core_distances(points, params.min_samples, 1);
        return cluster_from_mst(euclidean_mst(points, &core), points, steps, params);
    }
    HdbscanParams threaded = params;
    threaded.n_threads = n_threads;
    HdbscanResult result = hdbscan(points, threaded);
    Clustering c;
    c.labels = std::move(result.selection.labels);
    c.sizes = number_clusters(c.labels, points, steps, c.noise);
    c.mst = std::move(result.mst);
    return c;
}

}  // namespace memory_detail

namespace {

/// Buffers of number_clusters, reused by every key a thread numbers.
struct NumberingWorkspace {
    std::vector<int64_t> earliest, order, renamed;
};

MEDSCORE_TLS_ACCESSOR NumberingWorkspace& numbering_workspace() {
    thread_local NumberingWorkspace w;
    return w;
}

}  // namespace

std::vector<int64_t> number_clusters(std::vector<int64_t>& labels, const PointsView& points, const int64_t* steps,
                                     int64_t& noise) {
    NumberingWorkspace& w = numbering_workspace();
    int64_t n_clusters = 0;
    for (int64_t l : labels) n_clusters = std::max(n_clusters, l + 1);
    std::vector<int64_t>& earliest = w.earliest;
    earliest.assign(static_cast<size_t>(n_clusters), -1);
    auto earlier = [&](int64_t a, int64_t b) {  // (step, vector) of point a < that of point b
        if (steps[a] != steps[b]) return steps[a] < steps[b];
        return std::lexicographical_compare(points.row(a), points.row(a) + points.cols, points.row(b),
                                            points.row(b) + points.cols);
    };
    noise = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(labels.size()); ++i) {
        const int64_t l = labels[i];
        if (l < 0) { ++noise; labels[i] = -1; continue; }
        if (earliest[l] < 0 || earlier(i, earliest[l])) earliest[l] = i;
    }
    std::vector<int64_t>& order = w.order;
    order.resize(static_cast<size_t>(n_clusters));
    for (int64_t c = 0; c < n_clusters; ++c) {
        if (earliest[c] < 0) throw std::logic_error("number_clusters: a cluster label has no member");
        order[c] = c;
    }
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return earlier(earliest[a], earliest[b]) || (!earlier(earliest[b], earliest[a]) && earliest[a] < earliest[b]);
    });
    std::vector<int64_t>& renamed = w.renamed;
    renamed.resize(static_cast<size_t>(n_clusters));
    std::vector<int64_t> sizes(static_cast<size_t>(n_clusters), 0);
    for (int64_t r = 0; r < n_clusters; ++r) renamed[order[r]] = r;
    for (int64_t& l : labels) {
        if (l >= 0) { l = renamed[l]; ++sizes[l]; }
    }
    return sizes;
}

}  // namespace medscore
