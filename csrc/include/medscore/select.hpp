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

/// Scratch buffers of select_clusters; reusing one across calls avoids allocating once the
/// buffers have grown (the keyed memory selects in thousands of small trees per step).
struct SelectWorkspace {
    std::vector<int64_t> parent, point_cluster, kid_start, kids, term_start, fill, label_of;
    std::vector<double> birth, death, stability, point_lambda, terms, sub_terms;
    std::vector<char> marked, covered, selected, walked, top;
    std::vector<int64_t> clusters, members;
};

/// select_clusters writing into `out` (its vectors reused) with the buffers of `work`; the same result.
void select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, SelectionMethod method,
                     bool allow_single_cluster, double epsilon, SelectWorkspace& work, Selection& out);

}  // namespace medscore
