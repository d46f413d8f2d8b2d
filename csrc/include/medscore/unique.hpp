// The distinct values of an int64 array and where each entry is among them (np.unique with
// return_inverse), in O(n) when the values span a range of a few times n.
#pragma once
#include <cstdint>
#include <vector>

namespace medscore {

/// Distinct values in increasing order, and the position of every input value among them.
struct UniqueValues {
    std::vector<int64_t> values;   ///< [U] distinct, increasing
    std::vector<int64_t> inverse;  ///< [n] values[inverse[i]] == input[i]
};

/// np.unique(values, return_inverse=True) of `values` [n]: by a table over [min, max] when
/// that range is at most 4 n + 1024 wide (the usual case for a batch of prompt ids), else by
/// sorting.
UniqueValues unique_values(const int64_t* values, int64_t n);

}  // namespace medscore
