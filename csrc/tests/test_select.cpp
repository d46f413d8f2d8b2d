// Stage 5: EOM / leaf selection, allow_single_cluster, epsilon, probabilities, persistence.
#include <limits>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/select.hpp"

using namespace medscore;

// Root 6 splits at lambda 0.5 into three pairs that dissolve at lambda 1.
static const std::vector<CondensedRow> kThreePairs{
    {6, 7, 0.5, 2}, {6, 8, 0.5, 2}, {6, 9, 0.5, 2},
    {7, 0, 1.0, 1}, {7, 1, 1.0, 1}, {8, 2, 1.0, 1}, {8, 3, 1.0, 1}, {9, 4, 1.0, 1}, {9, 5, 1.0, 1}};

static void test_eom_and_leaf_pick_the_pairs() {
    for (const SelectionMethod method : {SelectionMethod::eom, SelectionMethod::leaf}) {
        const Selection s = select_clusters(kThreePairs, 6, method, false, 0.0);
        CHECK((s.labels == std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
        CHECK((s.probabilities == std::vector<double>(6, 1.0)));
        // stability (1 - 0.5) * 2 = 1, m = 2, max lambda 1.
        CHECK((s.persistence == std::vector<double>(3, 0.5)));
        CHECK((s.clusters == std::vector<int64_t>{7, 8, 9}));
    }
}

static void test_single_cluster() {
    // Root stability 0.5 * 2 * 3 = 3 equals the children's sum 3: not strictly greater, so
    // the root is kept; every point's lambda 1 >= 0.5 (the root's largest row lambda).
    const Selection s = select_clusters(kThreePairs, 6, SelectionMethod::eom, true, 0.0);
    CHECK((s.labels == std::vector<int64_t>(6, 0)));
    CHECK((s.probabilities == std::vector<double>(6, 1.0)));
    CHECK((s.persistence == std::vector<double>{0.5}));
}

static void test_epsilon() {
    // eps_of(pair) = 1 / 0.5 = 2 < 3: each pair walks up to the root, which is taken only
    // with allow_single_cluster; then a point is in it iff its lambda >= 1 / 3.
    const Selection kept = select_clusters(kThreePairs, 6, SelectionMethod::leaf, false, 3.0);
    CHECK((kept.labels == std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
    const Selection root = select_clusters(kThreePairs, 6, SelectionMethod::leaf, true, 3.0);
    CHECK((root.labels == std::vector<int64_t>(6, 0)));
    const Selection small = select_clusters(kThreePairs, 6, SelectionMethod::eom, false, 1.5);
    CHECK((small.labels == std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
}

static void test_noise_and_probabilities() {
    // Root 5 -> clusters 6 {0,1,2} and 7 {3,4}; point 2 leaves cluster 6 early (lambda 0.5).
    const std::vector<CondensedRow> rows{{5, 6, 0.25, 3}, {5, 7, 0.25, 2}, {6, 2, 0.5, 1}, {6, 0, 2.0, 1},
                                         {6, 1, 2.0, 1},  {7, 3, 1.0, 1},  {7, 4, 1.0, 1}};
    const Selection s = select_clusters(rows, 5, SelectionMethod::eom, false, 0.0);
    CHECK((s.labels == std::vector<int64_t>{0, 0, 0, 1, 1}));
    CHECK((s.probabilities == std::vector<double>{1.0, 1.0, 0.25, 1.0, 1.0}));
    // stability(6) = 1.75 + 1.75 + 0.25 = 3.75 over m = 3 and max lambda 2.
    CHECK(s.persistence.size() == 2 && s.persistence[0] == 3.75 / 6.0 && s.persistence[1] == 1.5 / 4.0);
}

static void test_degenerate() {
    const Selection one = select_clusters({}, 1, SelectionMethod::eom, true, 0.0);
    CHECK((one.labels == std::vector<int64_t>{-1}) && one.persistence.empty());
    // No child clusters: leaf selects nothing, eom without single cluster too.
    const std::vector<CondensedRow> flat{{3, 0, 1.0, 1}, {3, 1, 1.0, 1}, {3, 2, 1.0, 1}};
    CHECK((select_clusters(flat, 3, SelectionMethod::leaf, true, 0.0).labels == std::vector<int64_t>(3, -1)));
    CHECK((select_clusters(flat, 3, SelectionMethod::eom, false, 0.0).labels == std::vector<int64_t>(3, -1)));
    CHECK((select_clusters(flat, 3, SelectionMethod::eom, true, 0.0).labels == std::vector<int64_t>(3, 0)));
    CHECK_THROWS(select_clusters(flat, 4, SelectionMethod::eom, false, 0.0), std::invalid_argument);
    CHECK_THROWS(select_clusters(flat, 3, SelectionMethod::eom, false, -1.0), std::invalid_argument);
    CHECK_THROWS(select_clusters({{0, 1, 1.0, 1}}, 3, SelectionMethod::eom, false, 0.0), std::invalid_argument);
}

int main() {
    RUN(test_eom_and_leaf_pick_the_pairs);
    RUN(test_single_cluster);
    RUN(test_epsilon);
    RUN(test_noise_and_probabilities);
    RUN(test_degenerate);
    return TEST_RESULT();
}
