// NumPy-identical L2 normalisation: see medscore/normalize.hpp. The memory stores normalised
// fingerprints, and the MEDS reference normalises with NumPy; the same bits keep every
// distance, and so every clustering, identical to it.
#include "medscore/normalize.hpp"

#include <cmath>
#include <vector>

namespace medscore {

double numpy_sum(const double* values, int64_t n) noexcept {
    if (n < 8) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += values[i];
        return sum;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; ++j) r[j] = values[j];
        int64_t i = 8;
        for (; i < n - n % 8; i += 8) {
            for (int j = 0; j < 8; ++j) r[j] += values[i + j];
        }
        double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) sum += values[i];
        return sum;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return numpy_sum(values, half) + numpy_sum(values + half, n - half);
}

double numpy_norm_long(const double* values, int64_t n, double* squares) noexcept {
    for (int64_t k = 0; k < n; ++k) squares[k] = values[k] * values[k];
    return std::sqrt(numpy_sum(squares, n));
}

double numpy_norm(const double* values, int64_t n) {
    std::vector<double> squares(static_cast<size_t>(n));
    return numpy_norm(values, n, squares.data());
}

}  // namespace medscore
