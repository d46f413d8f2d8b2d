// Stage 5: EOM / leaf selection, allow_single_cluster, epsilon, probabilities, persistence,
// max_cluster_size, epsilon_max and the persistence simplification of the condensed tree.
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/condense.hpp"
#include "medscore/eom_labels.hpp"
#include "medscore/linkage.hpp"
#include "medscore/mst.hpp"
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

// Root 7: point 6 leaves at lambda 0.25, then the root splits at 0.5 into 8 {0, 1, 2} and
// 9 {3, 4, 5}, whose points leave at 0.6. Root stability 3.25 beats the children's 0.3 + 0.3.
static const std::vector<CondensedRow> kRootWins{
    {7, 6, 0.25, 1}, {7, 8, 0.5, 3}, {7, 9, 0.5, 3}, {8, 0, 0.6, 1}, {8, 1, 0.6, 1},
    {8, 2, 0.6, 1},  {9, 3, 0.6, 1}, {9, 4, 0.6, 1}, {9, 5, 0.6, 1}};

static Selection select_with(const std::vector<CondensedRow>& rows, int64_t n, SelectionMethod method, bool single,
                             double epsilon, int64_t max_size, double epsilon_max) {
    SelectOptions o;
    o.method = method;
    o.allow_single_cluster = single;
    o.epsilon = epsilon;
    o.max_cluster_size = max_size;
    o.epsilon_max = epsilon_max;
    return select_clusters(rows, n, o);
}

static void test_max_cluster_size() {
    const double inf = std::numeric_limits<double>::infinity();
    const std::vector<int64_t> root{0, 0, 0, 0, 0, 0, -1}, pair{0, 0, 0, 1, 1, 1, -1}, none(7, -1);
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 0, inf).labels == root));
    // The root's size is its child clusters' sizes summed (3 + 3), as hdbscan and scikit-learn
    // count it, not its 7 points: a limit of 6 keeps it, 5 does not.
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 6, inf).labels == root));
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 5, inf).labels == pair));
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 2, inf).labels == none));
    // leaf ignores the limit; epsilon can select a cluster above it (walk up to the root).
    CHECK((select_with(kRootWins, 7, SelectionMethod::leaf, false, 0.0, 1, inf).labels == pair));
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 3.0, 5, inf).labels == root));
    // The same options through the workspace overload; defaults equal the old overload.
    SelectWorkspace work;
    Selection out;
    SelectOptions o;
    o.allow_single_cluster = true;
    o.max_cluster_size = 5;
    select_clusters(kRootWins, 7, o, work, out);
    CHECK((out.labels == pair) && (out.clusters == std::vector<int64_t>{8, 9}));
    const Selection old = select_clusters(kThreePairs, 6, SelectionMethod::eom, true, 0.0);
    const Selection now = select_with(kThreePairs, 6, SelectionMethod::eom, true, 0.0, 0, inf);
    CHECK(old.labels == now.labels && old.probabilities == now.probabilities && old.persistence == now.persistence);
    CHECK_THROWS(select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, -1, inf), std::invalid_argument);
}

static void test_epsilon_max() {
    const double inf = std::numeric_limits<double>::infinity();
    // node eps: children 1 / 0.5 = 2; the root, the largest 1 / lambda of all rows: 4.
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 0, 4.0).labels ==
           std::vector<int64_t>{0, 0, 0, 0, 0, 0, -1}));
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 0, 3.0).labels ==
           std::vector<int64_t>{0, 0, 0, 1, 1, 1, -1}));
    CHECK((select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 0, 1.5).labels == std::vector<int64_t>(7, -1)));
    CHECK((select_with(kRootWins, 7, SelectionMethod::leaf, false, 0.0, 0, 1.5).labels ==
           std::vector<int64_t>{0, 0, 0, 1, 1, 1, -1}));
    CHECK_THROWS(select_with(kRootWins, 7, SelectionMethod::eom, true, 0.0, 0, -1.0), std::invalid_argument);
    (void)inf;
}

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

static void test_simplify_hierarchy() {
    // Root 8 splits at 0.5 into leaf 9 {0, 1} (dies at 0.55) and 10, which splits at 1 into
    // 11 {2, 3, 4} and 12 {5, 6, 7} (die at 3). Persistence: 9 about 0.05, 11 and 12: 2.
    const std::vector<CondensedRow> rows{{8, 9, 0.5, 2},   {8, 10, 0.5, 6},  {9, 0, 0.55, 1}, {9, 1, 0.55, 1},
                                         {10, 11, 1.0, 3}, {10, 12, 1.0, 3}, {11, 2, 3.0, 1}, {11, 3, 3.0, 1},
                                         {11, 4, 3.0, 1},  {12, 5, 3.0, 1},  {12, 6, 3.0, 1}, {12, 7, 3.0, 1}};
    // Any positive threshold leaves every lambda a float32 value (0.55 here), as the libraries.
    std::vector<CondensedRow> rounded = rows;
    for (CondensedRow& r : rounded) r.lambda_val = static_cast<double>(static_cast<float>(r.lambda_val));
    CHECK(rounded[2].lambda_val != 0.55);
    CHECK(same_rows(simplify_hierarchy(rows, 8, 0.0), rows));
    CHECK(same_rows(simplify_hierarchy(rows, 8, 0.04), rounded));
    // 0.1: the root's split dissolves; its most persistent child 10 is no leaf, so 10 goes on
    // as the root and 9's points leave at the split (0.5); 11, 12 become 9, 10.
    const std::vector<CondensedRow> cut{{8, 0, 0.5, 1},   {8, 1, 0.5, 1},   {8, 9, 1.0, 3},  {8, 10, 1.0, 3},
                                        {9, 2, 3.0, 1},   {9, 3, 3.0, 1},   {9, 4, 3.0, 1},  {10, 5, 3.0, 1},
                                        {10, 6, 3.0, 1},  {10, 7, 3.0, 1}};
    CHECK(same_rows(simplify_hierarchy(rows, 8, 0.1), cut));
    // 3: 10's split dissolves too (10 becomes a leaf), then the root's: all rows under the
    // root, lambdas kept (the most persistent child is a leaf).
    std::vector<CondensedRow> flat;
    for (const CondensedRow& r : rounded) {
        if (r.child < 8) flat.push_back({8, r.child, r.lambda_val, 1});
    }
    CHECK(same_rows(simplify_hierarchy(rows, 8, 3.0), flat));
    CHECK((select_clusters(simplify_hierarchy(rows, 8, 0.1), 8, SelectionMethod::eom, false, 0.0).labels ==
           std::vector<int64_t>{-1, -1, 0, 0, 0, 1, 1, 1}));
    CHECK(simplify_hierarchy({}, 1, 1.0).empty());
    CHECK_THROWS(simplify_hierarchy(rows, 8, -1.0), std::invalid_argument);
}

/// Whether two labellings (-1 noise) are the same partition up to the clusters' numbering.
static bool same_partition(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    if (a.size() != b.size()) return false;
    std::map<int64_t, int64_t> a_to_b, b_to_a;
    for (size_t i = 0; i < a.size(); ++i) {
        if ((a[i] < 0) != (b[i] < 0)) return false;
        if (a[i] < 0) continue;
        const auto a_as = a_to_b.emplace(a[i], b[i]).first;  // the first pairing of each label holds
        const auto b_as = b_to_a.emplace(b[i], a[i]).first;
        if (a_as->second != b[i] || b_as->second != a[i]) return false;
    }
    return true;
}

/// eom_labels (the fused workspace path) gives select_clusters(condense_tree(...))'s partition
/// on random trees with many tied weights (n-ary merges), one workspace reused throughout.
static void test_eom_labels_match_condense_and_select() {
    std::mt19937_64 rng(5);
    EomWorkspace work;
    std::vector<int64_t> labels;
    for (int trial = 0; trial < 200; ++trial) {
        const int64_t n = 1 + trial % 50, min_cluster_size = 2 + trial % 5;
        std::vector<MstEdge> edges;  // a random tree with weights from a few values
        for (int64_t v = 1; v < n; ++v) {
            edges.push_back(MstEdge{static_cast<int64_t>(rng() % static_cast<uint64_t>(v)), v,
                                    static_cast<double>(rng() % (1 + trial % 6))});
        }
        sort_edges(edges);
        const std::vector<LinkageRow> linkage = single_linkage(edges, n);
        const Selection expected = select_clusters(condense_tree(linkage, n, min_cluster_size), n,
                                                   SelectionMethod::eom, false, 0.0);
        eom_labels(linkage, n, min_cluster_size, work, labels);
        CHECK(same_partition(labels, expected.labels));
    }
}

int main() {
    RUN(test_eom_and_leaf_pick_the_pairs);
    RUN(test_single_cluster);
    RUN(test_epsilon);
    RUN(test_noise_and_probabilities);
    RUN(test_degenerate);
    RUN(test_max_cluster_size);
    RUN(test_epsilon_max);
    RUN(test_simplify_hierarchy);
    RUN(test_eom_labels_match_condense_and_select);
    return TEST_RESULT();
}
