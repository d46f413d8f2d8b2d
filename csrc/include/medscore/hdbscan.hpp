// The whole batch pipeline of docs/SPEC.md.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/condense.hpp"
#include "medscore/core_distance.hpp"
#include "medscore/linkage.hpp"
#include "medscore/matrix.hpp"
#include "medscore/mst.hpp"
#include "medscore/select.hpp"

namespace medscore {

struct HdbscanParams {
    int64_t min_cluster_size = 5;
    int64_t min_samples = 5;
    SelectionMethod method = SelectionMethod::eom;
    bool allow_single_cluster = false;
    double epsilon = 0.0;
    int n_threads = 0;
};

struct HdbscanResult {
    std::vector<double> core_distances;
    std::vector<MstEdge> mst;
    std::vector<LinkageRow> linkage;
    std::vector<CondensedRow> condensed;
    Selection selection;
};

/// Validates params (std::invalid_argument) and runs every stage.
HdbscanResult hdbscan(const PointsView& points, const HdbscanParams& params);

/// The stages after the MST (linkage, condense, select) for a sorted MST.
HdbscanResult hdbscan_from_mst(std::vector<double> core, std::vector<MstEdge> mst, int64_t n_points,
                               const HdbscanParams& params);

}  // namespace medscore
