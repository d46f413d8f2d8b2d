// The keyed memory's clustering of one key after its MST (internal to csrc/, not installed):
// the stages of docs/SPEC.md on thread-local workspaces, and the refit of a key.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/condense.hpp"
#include "medscore/eom_labels.hpp"
#include "medscore/hdbscan.hpp"
#include "medscore/linkage.hpp"
#include "medscore/matrix.hpp"
#include "medscore/select.hpp"
#include "medscore/thread_local.hpp"
#include "medscore/types.hpp"

namespace medscore {
namespace memory_detail {

/// Labels, cluster sizes, noise count and MST of one key's points.
struct Clustering {
    std::vector<int64_t> labels;
    std::vector<int64_t> sizes;
    int64_t noise = 0;
    std::vector<MstEdge> mst;
};

/// A cluster-free clustering of one point (noise).
Clustering single_point();

/// Buffers of the stages after the MST, reused by every key a thread clusters (a key of a
/// few hundred points then allocates only the labels, sizes and tree it keeps).
struct StageWorkspace {
    std::vector<LinkageRow> linkage;
    LinkageWorkspace link;
    EomWorkspace eom;  ///< the fused condense + EOM of the usual parameters (eom_labels.hpp)
    std::vector<CondensedRow> condensed;
    CondenseWorkspace condense;
    SelectWorkspace select;
    Selection selection;
};

/// This thread's workspace (kept across keys and steps).
StageWorkspace& stage_workspace();

/// The stages after the MST (linkage, condense, select; docs/SPEC.md) on a sorted MST,
/// then the numbering by earliest member. With `linkage_ready` the workspace's linkage
/// already holds the tree's rows (insert_into_mst built them).
Clustering cluster_from_mst(std::vector<MstEdge> mst, const PointsView& points, const int64_t* steps,
                            const HdbscanParams& params, bool linkage_ready = false);

/// Batch HDBSCAN of `points` on `n_threads` threads (1 when the caller runs keys in parallel).
Clustering refit(const PointsView& points, const int64_t* steps, const HdbscanParams& params, int n_threads);

}  // namespace memory_detail
}  // namespace medscore
