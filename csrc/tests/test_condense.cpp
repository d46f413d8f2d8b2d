// Stage 4: condensed tree; equal heights form one n-ary merge, independent of the MST chosen.
#include <limits>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/condense.hpp"
#include "medscore/linkage.hpp"

using namespace medscore;

static bool same_rows(const std::vector<CondensedRow>& a, const std::vector<CondensedRow>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].parent != b[i].parent || a[i].child != b[i].child || a[i].lambda_val != b[i].lambda_val ||
            a[i].child_size != b[i].child_size) {
            return false;
        }
    }
    return true;
}

// Pairs {0,1}, {2,3}, {4,5} at height 1, all three joined at height 2 (two tied edges).
static void test_three_way_merge() {
    const std::vector<CondensedRow> expected{
        {6, 7, 0.5, 2}, {6, 8, 0.5, 2}, {6, 9, 0.5, 2},
        {7, 0, 1.0, 1}, {7, 1, 1.0, 1}, {8, 2, 1.0, 1}, {8, 3, 1.0, 1}, {9, 4, 1.0, 1}, {9, 5, 1.0, 1}};
    // Two different MSTs of the same threshold graphs: the result must not depend on which.
    const std::vector<MstEdge> first{{0, 1, 1.0}, {2, 3, 1.0}, {4, 5, 1.0}, {1, 2, 2.0}, {3, 4, 2.0}};
    const std::vector<MstEdge> second{{0, 1, 1.0}, {2, 3, 1.0}, {4, 5, 1.0}, {0, 5, 2.0}, {3, 5, 2.0}};
    CHECK(same_rows(condense_tree(single_linkage(first, 6), 6, 2), expected));
    CHECK(same_rows(condense_tree(single_linkage(second, 6), 6, 2), expected));
}

static void test_small_children_fall_out() {
    // Point 4 joins the pair-of-pairs at height 3; with min_cluster_size 3 nothing splits.
    const std::vector<MstEdge> mst{{0, 1, 1.0}, {2, 3, 1.0}, {1, 2, 2.0}, {3, 4, 4.0}};
    const std::vector<CondensedRow> expected{
        {5, 4, 0.25, 1}, {5, 0, 0.5, 1}, {5, 1, 0.5, 1}, {5, 2, 0.5, 1}, {5, 3, 0.5, 1}};
    CHECK(same_rows(condense_tree(single_linkage(mst, 5), 5, 3), expected));
}

static void test_zero_height_is_infinite_lambda() {
    const std::vector<CondensedRow> rows = condense_tree(single_linkage({{0, 1, 0.0}}, 2), 2, 2);
    CHECK(rows.size() == 2 && rows[0].lambda_val == std::numeric_limits<double>::infinity());
    CHECK(condense_tree({}, 1, 2).empty());
}

static void test_bad_input_throws() {
    const std::vector<LinkageRow> linkage = single_linkage({{0, 1, 1.0}}, 2);
    CHECK_THROWS(condense_tree(linkage, 2, 1), std::invalid_argument);
    CHECK_THROWS(condense_tree(linkage, 3, 2), std::invalid_argument);
    CHECK_THROWS(condense_tree({{0, 5, 1.0, 2}}, 2, 2), std::invalid_argument);
}

int main() {
    RUN(test_three_way_merge);
    RUN(test_small_children_fall_out);
    RUN(test_zero_height_is_infinite_lambda);
    RUN(test_bad_input_throws);
    return TEST_RESULT();
}
