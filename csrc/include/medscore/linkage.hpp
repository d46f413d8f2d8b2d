// Stage 3 of docs/SPEC.md: the single-linkage tree from a sorted MST.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// Single-linkage tree [N - 1] from an MST sorted by (weight, u, v); node N + i is row i.
/// Throws std::invalid_argument if `mst` is not a spanning tree of n_points vertices.
std::vector<LinkageRow> single_linkage(const std::vector<MstEdge>& mst, int64_t n_points);

}  // namespace medscore
