// Plain structs mirroring the structured dtypes of medscore/_dtypes.py (same field order,
// same sizes); tests/test_dtypes.py checks the layouts through medscore._core.
#pragma once
#include <cstdint>

namespace medscore {

/// Edge of the mutual-reachability MST (u < v). Mirrors MST_EDGE.
struct MstEdge {
    int64_t u;
    int64_t v;
    double weight;
};

/// Row i of the single-linkage tree; node N + i is this row. Mirrors LINKAGE.
struct LinkageRow {
    int64_t left;
    int64_t right;
    double distance;
    int64_t size;
};

/// Row of the condensed tree. Mirrors CONDENSED.
struct CondensedRow {
    int64_t parent;
    int64_t child;
    double lambda_val;
    int64_t child_size;
};

static_assert(sizeof(MstEdge) == 24, "MstEdge must match MST_EDGE");
static_assert(sizeof(LinkageRow) == 32, "LinkageRow must match LINKAGE");
static_assert(sizeof(CondensedRow) == 32, "CondensedRow must match CONDENSED");

}  // namespace medscore
