// The bit-defined Euclidean distance of docs/SPEC.md, stage 1.
#pragma once
#include <cmath>
#include <cstdint>

namespace medscore {

/// Squared distance of two float64 D-vectors, summed in four lanes (lane j holds
/// k = j, j+4, ...), combined as (l0 + l1) + (l2 + l3). Compiled with -ffp-contract=off so
/// every backend and the Python reference get the same bits.
inline double squared_distance(const double* a, const double* b, int64_t d) noexcept {
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0;
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
        const double t0 = a[k] - b[k], t1 = a[k + 1] - b[k + 1];
        const double t2 = a[k + 2] - b[k + 2], t3 = a[k + 3] - b[k + 3];
        l0 += t0 * t0;
        l1 += t1 * t1;
        l2 += t2 * t2;
        l3 += t3 * t3;
    }
    if (k < d) { const double t = a[k] - b[k]; l0 += t * t; ++k; }
    if (k < d) { const double t = a[k] - b[k]; l1 += t * t; ++k; }
    if (k < d) { const double t = a[k] - b[k]; l2 += t * t; }
    return (l0 + l1) + (l2 + l3);
}

/// Euclidean distance: sqrt of squared_distance (IEEE sqrt is correctly rounded).
inline double euclidean_distance(const double* a, const double* b, int64_t d) noexcept {
    return std::sqrt(squared_distance(a, b, d));
}

}  // namespace medscore
