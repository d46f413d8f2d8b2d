// The keyed memory's input checks: its options, a step's batch, and a loaded key's tree and labels.
#include "memory_check.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/normalize.hpp"
#include "medscore/union_find.hpp"
#include "memory_cluster.hpp"

namespace medscore {
namespace memory_detail {
namespace {

/// Throws std::invalid_argument naming the first stored row (keys[i] >= 0) with an entry
/// beyond max_safe_magnitude; one branch-free pass over all rows first (it vectorises).
void check_magnitudes(const PointsView& points, const int64_t* keys) {
    const double bound = max_safe_magnitude(points.cols);
    const int64_t total = points.rows * points.cols;
    double largest = 0.0;  // NaN entries are skipped here (a key -1 row may hold them)
    for (int64_t at = 0; at < total; ++at) largest = std::max(largest, std::fabs(points.data[at]));
    if (!(largest > bound)) return;
    for (int64_t i = 0; i < points.rows; ++i) {
        if (keys[i] < 0) continue;
        for (int64_t j = 0; j < points.cols; ++j) {
            if (std::fabs(points.row(i)[j]) > bound) {
                std::ostringstream message;
                message << "penalize_step: row " << i << " has an entry of magnitude " << std::fabs(points.row(i)[j])
                        << "; without normalisation stored rows must satisfy max|x| <= 1e150 / sqrt(D) = " << bound
                        << " (their squared distances would overflow)";
                throw std::invalid_argument(message.str());
            }
        }
    }
}

}  // namespace

void check_params(const MemoryParams& p) {
    if (p.dim < 1) throw std::invalid_argument("KeyedMemory: dim must be >= 1, got " + std::to_string(p.dim));
    if (p.hdbscan.min_cluster_size < 2) {
        throw std::invalid_argument("KeyedMemory: min_cluster_size must be >= 2, got " +
                                    std::to_string(p.hdbscan.min_cluster_size));
    }
    if (p.hdbscan.min_samples < 1) {
        throw std::invalid_argument("KeyedMemory: min_samples must be >= 1, got " + std::to_string(p.hdbscan.min_samples));
    }
    if (p.vote_k < 1) throw std::invalid_argument("KeyedMemory: vote_k must be >= 1, got " + std::to_string(p.vote_k));
    if (p.max_age < -1) throw std::invalid_argument("KeyedMemory: max_age must be >= 0 or -1 (none)");
    if (p.capacity == 0 || p.capacity < -1) throw std::invalid_argument("KeyedMemory: capacity must be >= 1 or -1 (none)");
    if (!std::isfinite(p.hdbscan.epsilon) || p.hdbscan.epsilon < 0.0) {
        throw std::invalid_argument("KeyedMemory: cluster_selection_epsilon must be finite and >= 0");
    }
}

void check_batch(const PointsView& points, const int64_t* keys, int64_t step, int64_t dim, int64_t last_step,
                 bool normalize) {
    check_points(points, "penalize_step");
    if (points.cols != dim) {
        throw std::invalid_argument("penalize_step: fingerprints have " + std::to_string(points.cols) +
                                    " dimensions, the memory holds " + std::to_string(dim));
    }
    if (keys == nullptr) throw std::invalid_argument("penalize_step: keys is null");
    if (step < 0 || step > kMaxStep) {
        throw std::invalid_argument("penalize_step: step must be in [0, 2^63 - 2], got " + std::to_string(step));
    }
    if (step < last_step) {
        throw std::invalid_argument("penalize_step: step " + std::to_string(step) + " is before the last step " +
                                    std::to_string(last_step));
    }
    // Branch-free integer passes first (they vectorise); a row is located only when one fails.
    int64_t lowest_key = 0;
    for (int64_t i = 0; i < points.rows; ++i) lowest_key = std::min(lowest_key, keys[i]);
    if (lowest_key < -1) {
        for (int64_t i = 0; i < points.rows; ++i) {
            if (keys[i] < -1) {
                throw std::invalid_argument("penalize_step: key ids must be >= 0 (or -1: not stored), row " +
                                            std::to_string(i));
            }
        }
    }
    // x * 0.0 is 0 for a finite x and NaN for an infinite or NaN one, so eight running sums
    // (a loop that vectorises) are all zero exactly when every entry is finite.
    double zero[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const int64_t total = points.rows * dim;
    int64_t at = 0;
    for (; at + 8 <= total; at += 8) {
        for (int j = 0; j < 8; ++j) zero[j] += points.data[at + j] * 0.0;
    }
    for (; at < total; ++at) zero[0] += points.data[at] * 0.0;
    bool all_finite = true;
    for (const double z : zero) all_finite &= z == 0.0;
    if (!all_finite) {  // only stored rows must be finite
        for (int64_t i = 0; i < points.rows; ++i) {
            if (keys[i] < 0) continue;
            for (int64_t j = 0; j < dim; ++j) {
                if (!std::isfinite(points.row(i)[j])) {
                    throw std::invalid_argument("penalize_step: row " + std::to_string(i) + " is not finite");
                }
            }
        }
    }
    if (!normalize) check_magnitudes(points, keys);
}

bool stores_two_keys(const int64_t* keys, int64_t n) noexcept {
    int64_t first = -1;
    for (int64_t i = 0; i < n; ++i) {
        if (keys[i] < 0) continue;
        if (first < 0) first = keys[i];
        else if (keys[i] != first) return true;
    }
    return false;
}

void throw_first_unnormalisable_row(const PointsView& points, const int64_t* keys) {
    std::vector<double> squares(static_cast<size_t>(points.cols));
    for (int64_t i = 0; i < points.rows; ++i) {
        if (keys[i] < 0) continue;
        const double norm = numpy_norm(points.row(i), points.cols, squares.data());
        if (norm == 0.0) {
            throw std::invalid_argument("fingerprint row " + std::to_string(i) +
                                        " is all zeros (or its squares underflow) and cannot be L2-normalised");
        }
        if (!(norm <= kMaxNorm)) {
            throw std::invalid_argument("fingerprint row " + std::to_string(i) +
                                        " has a Euclidean norm that overflows float64 and cannot be L2-normalised");
        }
    }
}

}  // namespace memory_detail

void check_loaded_key(const KeyState& key, const MemoryParams& params, const std::string& where) {
    const int64_t n = key.size(), dim = params.dim;
    if (n < 2) return;
    auto bad = [&](const std::string& what) { throw std::invalid_argument(where + what); };
    UnionFind sets(n);
    for (size_t i = 0; i < key.mst.size(); ++i) {
        const MstEdge& e = key.mst[i];
        if (i > 0) {
            const MstEdge& p = key.mst[i - 1];
            if (!(std::tie(p.weight, p.u, p.v) < std::tie(e.weight, e.u, e.v))) {
                bad("MST edges are not sorted by (weight, u, v) or an edge is written twice");
            }
        }
        if (!sets.unite(e.u, e.v)) bad("the MST has a cycle, so it does not connect every point");
        const double d = euclidean_distance(key.points.data() + e.u * dim, key.points.data() + e.v * dim, dim);
        const bool weight_ok = params.hdbscan.min_samples == 1 ? e.weight == d : e.weight >= d;
        if (!weight_ok) {
            bad("MST edge (" + std::to_string(e.u) + ", " + std::to_string(e.v) +
                ") does not have the weight of its points");
        }
    }
    const memory_detail::Clustering c = memory_detail::cluster_from_mst(key.mst, PointsView{key.points.data(), n, dim}, key.steps.data(), params.hdbscan);
    if (c.labels != key.labels) bad("the labels are not the clustering of the MST");
}

}  // namespace medscore
