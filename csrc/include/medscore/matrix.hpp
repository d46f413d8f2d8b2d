// Non-owning views of row-major float64 point matrices.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medscore {

/// A row-major, C-contiguous float64 matrix [rows, cols] owned by the caller.
struct PointsView {
    const double* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;

    const double* row(int64_t i) const noexcept { return data + i * cols; }
};

/// Throws std::invalid_argument unless `points` is a usable view (rows >= 1, cols >= 1).
inline void check_points(const PointsView& points, const char* what) {
    if (points.data == nullptr || points.rows < 1 || points.cols < 1) {
        throw std::invalid_argument(std::string(what) + ": expected a non-empty [N, D] matrix, got [" +
                                    std::to_string(points.rows) + ", " + std::to_string(points.cols) + "]");
    }
}

/// The largest coordinate magnitude M of rows that engines which store rows without
/// normalising them accept (IncrementalHDBSCAN falls back to a rebuild above it; an
/// un-normalised KeyedMemory refuses such rows): M = 1e150 / sqrt(dim). Then every squared
/// distance, at most dim * (2M)^2 = 4e300, is finite, so no weight overflows to infinity.
inline double max_safe_magnitude(int64_t dim) noexcept { return 1e150 / std::sqrt(static_cast<double>(dim)); }

}  // namespace medscore
