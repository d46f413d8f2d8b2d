// L2 normalisation of rows with the bits of NumPy's `x / np.linalg.norm(x, axis=1, keepdims=True)`.
#pragma once
#include <cstdint>

#include "medscore/matrix.hpp"

namespace medscore {

/// NumPy's summation of n contiguous float64 values (its pairwise sum, as `np.add.reduce`
/// does along a contiguous axis): below 8 values in order; up to 128 values eight running
/// sums combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest in order;
/// above 128 the two halves (the first a multiple of 8 long) summed alike and added.
double numpy_sum(const double* values, int64_t n) noexcept;

/// Euclidean norm of `values` [n]: sqrt(numpy_sum of the squares), the bits of
/// `np.linalg.norm` of a row.
double numpy_norm(const double* values, int64_t n);

/// numpy_norm with the caller's buffer `squares` [n] (no allocation).
double numpy_norm(const double* values, int64_t n, double* squares) noexcept;

/// y[k] = x[k] / norm for k < d (x and y do not overlap): the division of
/// l2_normalized_rows, for a caller that has the norm already.
void divide_row(const double* x, double norm, int64_t d, double* y) noexcept;

/// Writes rows `rows[0 .. count)` of `points` divided by their Euclidean norms into `out`
/// [count, points.cols], each divided by its numpy_norm: the same bits as NumPy's
/// `x / np.linalg.norm(x, axis=1, keepdims=True)`. Returns the position (in `rows`) of the
/// first row whose norm is zero, or -1; rows from there on are then not written.
/// Row indices must be valid (checked by the caller).
int64_t l2_normalized_rows(const PointsView& points, const int64_t* rows, int64_t count, double* out) noexcept;

}  // namespace medscore
