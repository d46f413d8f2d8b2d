// The workspace fast path of stages 4 and 5 (docs/SPEC.md) for the keyed memory's usual
// parameters: condense + EOM selection fused for the labels alone. Defined in select.cpp.
// Private to csrc/ (under csrc/private, never installed): it trusts its linkage.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

/// Buffers of eom_labels, reused across calls on one thread (no allocation once grown): the
/// clusters of the condensed tree by discovery (parent, birth, the ids of their children),
/// their rows' stability terms (contiguous per cluster), each point's cluster, and the walk's
/// buffers.
struct EomWorkspace {
    std::vector<int64_t> queue, stack, children, big, cluster_parent, term_start, kid_end, point_cluster, label_of;
    std::vector<double> birth, terms, stability, sub_terms;
    std::vector<char> marked, covered;
};

/// The labels ([n_points], -1 noise) that select_clusters(condense_tree(linkage, n_points,
/// min_cluster_size), n_points, eom) gives with epsilon 0, no single cluster and no size or
/// epsilon limit, up to the numbering of the clusters: here 0..K-1 in the order a breadth-first
/// walk discovers them, not by condensed-tree id (the keyed memory renumbers them by earliest
/// member anyway). It walks the same condensed tree as condense_tree: the same clusters,
/// parents, births and rows, so the same stabilities (each a sum in ascending order of its
/// terms) and the same EOM choices. What it skips cannot change the partition: the children
/// of an n-ary merge are not ordered by their smallest point (that order only numbers the
/// clusters, and a cluster is still discovered after its parent), the points of a subtree are
/// not sorted, and neither probabilities nor persistence are computed. That made a keyed
/// memory's step about 18% cheaper in CPU than condense_tree + select_clusters on workspaces
/// (benchmarks/RESULTS.md, commit 5a12897). `linkage` must be the n_points - 1 rows that
/// single_linkage gives for a spanning tree (only their count is checked, std::logic_error);
/// min_cluster_size >= 2.
void eom_labels(const std::vector<LinkageRow>& linkage, int64_t n_points, int64_t min_cluster_size,
                EomWorkspace& work, std::vector<int64_t>& labels);

}  // namespace medscore
