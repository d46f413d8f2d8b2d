// Stage 3 of docs/SPEC.md: the single-linkage tree from a sorted MST.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// Single-linkage tree [N - 1] from an MST sorted by (weight, u, v); node N + i is row i.
/// Throws std::invalid_argument if `mst` is not a spanning tree of n_points vertices.
std::vector<LinkageRow> single_linkage(const std::vector<MstEdge>& mst, int64_t n_points);

/// Scratch buffers of single_linkage: disjoint sets over the points and, for each set's root,
/// the linkage node standing for the set. Reusing one across calls avoids every allocation
/// once the buffers have grown (the keyed memory links thousands of small trees per step).
struct LinkageWorkspace {
    std::vector<int64_t> set_parent;    ///< [N] disjoint-set parents (path halving)
    std::vector<int64_t> set_size;      ///< [N] points under each root (union by size)
    std::vector<int64_t> node_of_root;  ///< [N] linkage node of the set with that root
};

/// single_linkage writing its N - 1 rows into `out` (resized) with the buffers of `work`:
/// the same rows and the same checks.
void single_linkage(const std::vector<MstEdge>& mst, int64_t n_points, LinkageWorkspace& work,
                    std::vector<LinkageRow>& out);

}  // namespace medscore
