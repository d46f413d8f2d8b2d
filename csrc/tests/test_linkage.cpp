// Stage 3: Kruskal single-linkage tree from a sorted MST.
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/linkage.hpp"
#include "medscore/mst.hpp"

using namespace medscore;

static void test_hand_checked_tree() {
    const std::vector<LinkageRow> rows = single_linkage({{0, 1, 1.0}, {2, 3, 2.0}, {1, 2, 3.0}}, 4);
    CHECK(rows.size() == 3);
    CHECK(rows[0].left == 0 && rows[0].right == 1 && rows[0].distance == 1.0 && rows[0].size == 2);
    CHECK(rows[1].left == 2 && rows[1].right == 3 && rows[1].distance == 2.0 && rows[1].size == 2);
    CHECK(rows[2].left == 4 && rows[2].right == 5 && rows[2].distance == 3.0 && rows[2].size == 4);
    CHECK(single_linkage({}, 1).empty());
}

static void test_bad_input_throws() {
    CHECK_THROWS(single_linkage({{0, 1, 1.0}}, 3), std::invalid_argument);                // too few edges
    CHECK_THROWS(single_linkage({{0, 1, 1.0}, {1, 0, 2.0}}, 3), std::invalid_argument);    // cycle
    CHECK_THROWS(single_linkage({{0, 1, 2.0}, {1, 2, 1.0}}, 3), std::invalid_argument);    // unsorted
    CHECK_THROWS(single_linkage({{0, 7, 1.0}, {1, 2, 1.0}}, 3), std::invalid_argument);    // vertex out of range
    CHECK_THROWS(single_linkage({}, 0), std::invalid_argument);
}

/// The workspace overload gives the allocating one's rows, with one workspace reused over
/// trees of growing and shrinking sizes (stale entries must not leak into a smaller tree).
static void test_workspace_overload_matches() {
    LinkageWorkspace work;
    std::vector<LinkageRow> rows;
    for (const int64_t n : {9, 3, 17, 1, 6}) {
        std::vector<MstEdge> mst;  // a tree with tied weights, its edges out of vertex order
        for (int64_t v = 1; v < n; ++v) mst.push_back(MstEdge{(v * 37 + 11) % v, v, static_cast<double>(v % 3)});
        sort_edges(mst);
        const std::vector<LinkageRow> expected = single_linkage(mst, n);
        single_linkage(mst, n, work, rows);
        CHECK(rows.size() == expected.size());
        for (size_t i = 0; i < rows.size() && i < expected.size(); ++i) {
            CHECK(rows[i].left == expected[i].left && rows[i].right == expected[i].right &&
                  rows[i].distance == expected[i].distance && rows[i].size == expected[i].size);
        }
    }
    CHECK_THROWS(single_linkage({{0, 1, 1.0}, {1, 0, 2.0}}, 3, work, rows), std::invalid_argument);  // cycle
}

int main() {
    RUN(test_hand_checked_tree);
    RUN(test_bad_input_throws);
    RUN(test_workspace_overload_matches);
    return TEST_RESULT();
}
