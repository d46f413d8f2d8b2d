// Stage 3: Kruskal single-linkage tree from a sorted MST.
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/linkage.hpp"

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

int main() {
    RUN(test_hand_checked_tree);
    RUN(test_bad_input_throws);
    return TEST_RESULT();
}
