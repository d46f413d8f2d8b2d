// Non-owning views of row-major float64 point matrices.
#pragma once
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

}  // namespace medscore
