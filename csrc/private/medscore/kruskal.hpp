// The strict edge order (weight, u, v) and Kruskal's merge of two sorted edge lists, shared
// by the keyed memory's MST insert (memory_insert.cpp) and the incremental engine
// (incremental.cpp); defined in mst.cpp (stage 2). Private to csrc/: under csrc/private,
// never installed.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/linkage.hpp"
#include "medscore/types.hpp"

namespace medscore {

/// Whether edge a comes before edge b in the strict order (weight, u, v): under it the MST
/// of a graph is unique, whatever ties its weights have.
inline bool edge_less(const MstEdge& a, const MstEdge& b) noexcept {
    if (a.weight != b.weight) return a.weight < b.weight;
    if (a.u != b.u) return a.u < b.u;
    return a.v < b.v;
}

/// edge_less as a function object: std::sort inlines it (a function pointer it calls).
struct EdgeLess {
    bool operator()(const MstEdge& a, const MstEdge& b) const noexcept { return edge_less(a, b); }
};

/// Kruskal over the union of `a` and `b` (each sorted by edge_less) on n >= 1 vertices,
/// merging the two lists on the fly: the minimum spanning tree of their edges, sorted by
/// edge_less. It stops at the tree's last edge (every later edge closes a cycle). Disjoint
/// sets come from `work` (no allocation once grown; the tree does not depend on them).
/// `linkage`, if not null, receives the tree's single-linkage rows (those single_linkage
/// gives), built in the same pass. Throws std::logic_error naming `caller` if the edges do
/// not span the vertices: callers pass candidate sets that provably hold a spanning tree.
std::vector<MstEdge> kruskal_merge(const std::vector<MstEdge>& a, const std::vector<MstEdge>& b, int64_t n,
                                   LinkageWorkspace& work, std::vector<LinkageRow>* linkage, const char* caller);

}  // namespace medscore
