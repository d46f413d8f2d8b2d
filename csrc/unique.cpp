// unique_values: see medscore/unique.hpp.
#include "medscore/unique.hpp"

#include <algorithm>
#include <stdexcept>

namespace medscore {

UniqueValues unique_values(const int64_t* values, int64_t n) {
    if (n < 0 || (n > 0 && values == nullptr)) throw std::invalid_argument("unique_values: bad input");
    UniqueValues out;
    out.inverse.resize(static_cast<size_t>(n));
    if (n == 0) return out;
    const auto [low_it, high_it] = std::minmax_element(values, values + n);
    const int64_t low = *low_it;
    // The span as unsigned: max - min cannot overflow there.
    const uint64_t span = static_cast<uint64_t>(*high_it) - static_cast<uint64_t>(low);
    if (span <= 4 * static_cast<uint64_t>(n) + 1024) {
        std::vector<int64_t> rank(static_cast<size_t>(span) + 1, -1);
        for (int64_t i = 0; i < n; ++i) rank[static_cast<uint64_t>(values[i]) - static_cast<uint64_t>(low)] = 0;
        for (size_t slot = 0; slot < rank.size(); ++slot) {
            if (rank[slot] < 0) continue;
            rank[slot] = static_cast<int64_t>(out.values.size());
            out.values.push_back(static_cast<int64_t>(static_cast<uint64_t>(low) + slot));
        }
        for (int64_t i = 0; i < n; ++i) out.inverse[i] = rank[static_cast<uint64_t>(values[i]) - static_cast<uint64_t>(low)];
        return out;
    }
    out.values.assign(values, values + n);
    std::sort(out.values.begin(), out.values.end());
    out.values.erase(std::unique(out.values.begin(), out.values.end()), out.values.end());
    for (int64_t i = 0; i < n; ++i) {
        out.inverse[i] = std::lower_bound(out.values.begin(), out.values.end(), values[i]) - out.values.begin();
    }
    return out;
}

}  // namespace medscore
