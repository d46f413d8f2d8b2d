// Stage 4 of docs/SPEC.md: the condensed tree with n-ary merges at tied heights.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// Condensed tree of a single-linkage tree over n_points points (min_cluster_size >= 2).
std::vector<CondensedRow> condense_tree(const std::vector<LinkageRow>& linkage, int64_t n_points,
                                        int64_t min_cluster_size);

}  // namespace medscore
