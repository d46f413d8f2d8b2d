// Stage 5 of docs/SPEC.md: stability, EOM/leaf selection, epsilon, labels, probabilities.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

enum class SelectionMethod { eom, leaf };

struct Selection {
    std::vector<int64_t> labels;         ///< [N], -1 for noise
    std::vector<double> probabilities;   ///< [N]
    std::vector<double> persistence;     ///< [n_clusters], by label
    std::vector<int64_t> clusters;       ///< [n_clusters] condensed-tree id of each label
};

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points,
                          SelectionMethod method, bool allow_single_cluster, double epsilon);

}  // namespace medscore
