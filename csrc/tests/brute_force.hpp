// Obvious O(N^2) oracles for the C++ tests: distances, k nearest neighbours and Prim's MST.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/matrix.hpp"

namespace medscore_test {

/// Seeded Gaussian blobs [n, d] (row-major): `centers` centres spread by `spread`.
inline std::vector<double> blobs(int64_t n, int64_t d, int centers, double spread, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> gauss;
    std::vector<double> c(static_cast<size_t>(centers * d)), x(static_cast<size_t>(n * d));
    for (double& v : c) v = spread * gauss(rng);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t which = static_cast<int64_t>(rng() % static_cast<uint64_t>(centers));
        for (int64_t k = 0; k < d; ++k) x[i * d + k] = c[which * d + k] + gauss(rng);
    }
    return x;
}

/// k nearest other points of row i ordered by (distance, index).
inline std::vector<std::pair<double, int64_t>> brute_neighbors(const medscore::PointsView& x, int64_t i, int64_t k) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t j = 0; j < x.rows; ++j) {
        if (j != i) all.emplace_back(medscore::euclidean_distance(x.row(i), x.row(j), x.cols), j);
    }
    std::sort(all.begin(), all.end());
    all.resize(static_cast<size_t>(k));
    return all;
}

/// Sorted MST weights by Prim on the dense mutual-reachability graph.
inline std::vector<double> prim_weights(const medscore::PointsView& x, const std::vector<double>& core) {
    const int64_t n = x.rows;
    std::vector<double> best(static_cast<size_t>(n), std::numeric_limits<double>::infinity()), out;
    std::vector<char> done(static_cast<size_t>(n), 0);
    int64_t current = 0;
    done[0] = 1;
    for (int64_t step = 1; step < n; ++step) {
        int64_t next = -1;
        for (int64_t j = 0; j < n; ++j) {
            if (done[j]) continue;
            const double w = std::max({core[current], core[j],
                                       medscore::euclidean_distance(x.row(current), x.row(j), x.cols)});
            best[j] = std::min(best[j], w);
            if (next < 0 || best[j] < best[next]) next = j;
        }
        out.push_back(best[next]);
        done[next] = 1;
        current = next;
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace medscore_test
