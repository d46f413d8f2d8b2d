// Stage 4 of docs/SPEC.md: the condensed tree with n-ary merges at tied heights.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// Condensed tree of a single-linkage tree over n_points points (min_cluster_size >= 2).
std::vector<CondensedRow> condense_tree(const std::vector<LinkageRow>& linkage, int64_t n_points,
                                        int64_t min_cluster_size);

/// Scratch buffers of condense_tree; reusing one across calls avoids every allocation once
/// the buffers have grown (the keyed memory condenses thousands of small trees per step).
struct CondenseWorkspace {
    std::vector<int64_t> min_point;  ///< [2N - 1] smallest point under each node
    std::vector<int64_t> stack;
    std::vector<int64_t> children;
    std::vector<int64_t> big;
    std::vector<int64_t> points;
    std::vector<int64_t> queue;      ///< (node, label) pairs, consumed from the front
};

/// condense_tree writing into `out` (cleared first) with the buffers of `work`; the same rows.
void condense_tree(const std::vector<LinkageRow>& linkage, int64_t n_points, int64_t min_cluster_size,
                   CondenseWorkspace& work, std::vector<CondensedRow>& out);

}  // namespace medscore
