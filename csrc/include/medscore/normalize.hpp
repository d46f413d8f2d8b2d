// L2 normalisation of rows with the bits of NumPy's `x / np.linalg.norm(x, axis=1, keepdims=True)`.
#pragma once
#include <cmath>
#include <cstdint>

namespace medscore {

/// NumPy's summation of n contiguous float64 values (its pairwise sum, as `np.add.reduce`
/// does along a contiguous axis): below 8 values in order; up to 128 values eight running
/// sums combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest in order;
/// above 128 the two halves (the first a multiple of 8 long) summed alike and added.
double numpy_sum(const double* values, int64_t n) noexcept;

/// Euclidean norm of `values` [n]: sqrt(numpy_sum of the squares), the bits of
/// `np.linalg.norm` of a row.
double numpy_norm(const double* values, int64_t n);

/// numpy_norm of more than 128 values, with the caller's buffer `squares` [n].
double numpy_norm_long(const double* values, int64_t n, double* squares) noexcept;

/// numpy_norm with the caller's buffer `squares` [n] (used above 128 values; no allocation).
/// Inline: a short row (numpy_sum's two short cases) is squared as it is summed, the same
/// operations in the same order.
inline double numpy_norm(const double* x, int64_t n, double* squares) noexcept {
    if (n > 128) return numpy_norm_long(x, n, squares);
    if (n < 8) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
        return std::sqrt(sum);
    }
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = x[j] * x[j];
    int64_t i = 8;
    for (; i < n - n % 8; i += 8) {
        for (int j = 0; j < 8; ++j) r[j] += x[i + j] * x[i + j];
    }
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) sum += x[i] * x[i];
    return std::sqrt(sum);
}

/// y[k] = x[k] / norm for k < d (x and y do not overlap): with norm = numpy_norm(x, d), the
/// bits of NumPy's `x / np.linalg.norm(x)`. __restrict lets the loop vectorise (IEEE
/// division is exact at any vector width, so the bits do not depend on it).
inline void divide_row(const double* __restrict x, double norm, int64_t d, double* __restrict y) noexcept {
    for (int64_t k = 0; k < d; ++k) y[k] = x[k] / norm;
}

}  // namespace medscore
