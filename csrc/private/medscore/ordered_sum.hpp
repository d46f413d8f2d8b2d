// The order-free float64 sum of docs/SPEC.md stage 5 (private to csrc/: under csrc/private, never installed).
#pragma once
#include <algorithm>
#include <cmath>

namespace medscore {

/// Float64 sum of [begin, end) in ascending order of the values (NaN sorted last: the sum
/// is NaN anyway), so that it does not depend on the order of the terms. Sorts the range.
inline double ordered_sum(double* begin, double* end) {
    // Two terms need no sort: 0 + a is a, and a + b == b + a bit for bit.
    if (end - begin <= 2) return end == begin ? 0.0 : (end - begin == 1 ? 0.0 + *begin : (0.0 + begin[0]) + begin[1]);
    std::sort(begin, end, [](double a, double b) { return !std::isnan(a) && (std::isnan(b) || a < b); });
    double total = 0.0;
    for (const double* v = begin; v != end; ++v) total += *v;
    return total;
}

}  // namespace medscore
