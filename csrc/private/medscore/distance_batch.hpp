// Many bit-defined squared distances from one query at once (private to csrc/: under csrc/private, never installed).
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/matrix.hpp"

namespace medscore {

/// out[j] = squared_distance(q, rows[j], d) for j < count, bit for bit: the same four lanes,
/// each summed in the same order, only several rows interleaved (SSE2, or AVX2 when the CPU
/// has it; never FMA) so that the additions' latency overlaps.
void squared_distances(const double* q, const double* const* rows, int64_t count, int64_t d, double* out) noexcept;

/// Rows of a matrix stored by coordinate (structure of arrays): coordinate k of row j at
/// values[k * stride + j], stride a multiple of 8 (padding rows are zero). Distances from one
/// query to every row then vectorise across rows, eight at a time, with the bits of
/// squared_distance: lane k % 4 still sums its terms in increasing k, and the lanes combine
/// as (l0 + l1) + (l2 + l3). For the small dense problems of the keyed memory (a key's vote,
/// Prim's algorithm) where one query meets every row.
class PointColumns {
public:
    /// Stores rows [first, first + count) of `points`.
    void assign(const PointsView& points, int64_t first, int64_t count);
    int64_t rows() const noexcept { return rows_; }
    /// Entries of the output buffer squared_distances writes: rows() rounded up to 8.
    int64_t stride() const noexcept { return stride_; }
    /// out[j] = squared_distance(q, row j) for j < rows(); out must hold stride() entries
    /// (the padding entries are overwritten with unspecified values).
    void squared_distances(const double* q, double* out) const noexcept;

private:
    std::vector<double> values_;
    int64_t rows_ = 0, cols_ = 0, stride_ = 0;
};

}  // namespace medscore
