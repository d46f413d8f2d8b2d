// Stage 2: exact mutual-reachability MST, initial forests, Kruskal on edge lists.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "brute_force.hpp"
#include "check.hpp"
#include "medscore/core_distance.hpp"
#include "medscore/kruskal.hpp"
#include "medscore/linkage.hpp"
#include "medscore/mst.hpp"

using namespace medscore;

/// N - 1 edges, u < v, sorted by (weight, u, v), connecting every point.
static bool is_sorted_spanning_tree(const std::vector<MstEdge>& mst, int64_t n) {
    if (static_cast<int64_t>(mst.size()) != n - 1) return false;
    std::vector<MstEdge> copy = mst;
    sort_edges(copy);
    bool ordered = true;
    for (size_t i = 0; i < mst.size(); ++i) {
        ordered = ordered && mst[i].u < mst[i].v && mst[i].u == copy[i].u && mst[i].v == copy[i].v;
    }
    return ordered && static_cast<int64_t>(spanning_forest_of_edges(mst, n).size()) == n - 1;
}

static std::vector<double> weights_of(const std::vector<MstEdge>& mst) {
    std::vector<double> w;
    for (const MstEdge& e : mst) w.push_back(e.weight);
    return w;
}

static void test_matches_prim() {
    for (const int64_t d : {1, 3, 24, 64}) {
        for (const bool rounded : {false, true}) {  // rounded: many tied weights
            std::vector<double> x = medscore_test::blobs(250, d, 3, 5.0, static_cast<uint64_t>(100 + d));
            if (rounded) {
                for (double& v : x) v = static_cast<double>(static_cast<int64_t>(v));
            }
            const PointsView view{x.data(), 250, d};
            const std::vector<double> core = core_distances(view, 4, 2);
            const std::vector<MstEdge> mst = minimum_spanning_tree(view, core, 2);
            CHECK(is_sorted_spanning_tree(mst, 250));
            CHECK(weights_of(mst) == medscore_test::prim_weights(view, core));
        }
    }
}

static void test_initial_forest_is_kept() {
    std::vector<double> x = medscore_test::blobs(120, 5, 2, 4.0, 7);
    const PointsView view{x.data(), 120, 5};
    const std::vector<double> core = core_distances(view, 3);
    const std::vector<MstEdge> full = minimum_spanning_tree(view, core);
    std::vector<MstEdge> forest;
    for (size_t i = 0; i < full.size(); i += 3) forest.push_back(full[i]);
    const std::vector<MstEdge> again = minimum_spanning_tree(view, core, 1, &forest);
    CHECK(is_sorted_spanning_tree(again, 120));
    CHECK(weights_of(again) == weights_of(full));
    for (const MstEdge& e : forest) {
        CHECK(std::any_of(again.begin(), again.end(), [&](const MstEdge& f) { return f.u == e.u && f.v == e.v; }));
    }
    std::vector<MstEdge> cycle{{0, 1, 1.0}, {1, 2, 1.0}, {0, 2, 1.0}};
    CHECK_THROWS(minimum_spanning_tree(view, core, 1, &cycle), std::invalid_argument);
    std::vector<MstEdge> outside{{0, 500, 1.0}};
    CHECK_THROWS(minimum_spanning_tree(view, core, 1, &outside), std::invalid_argument);
}

static void test_sizes_and_tiny_inputs() {
    const std::vector<double> one{3.0};
    CHECK(minimum_spanning_tree(PointsView{one.data(), 1, 1}, {0.0}).empty());
    const std::vector<double> x{0.0, 1.0, 5.0};
    CHECK_THROWS(minimum_spanning_tree(PointsView{x.data(), 3, 1}, {1.0, 1.0}), std::invalid_argument);
    // All points equal: every weight is 0 and any spanning tree is minimal.
    const std::vector<double> same(10, 2.5);
    const std::vector<MstEdge> mst = minimum_spanning_tree(PointsView{same.data(), 10, 1}, std::vector<double>(10, 0.0));
    CHECK(is_sorted_spanning_tree(mst, 10));
    CHECK(weights_of(mst) == std::vector<double>(9, 0.0));
}

static void test_spanning_forest_of_edges() {
    const std::vector<MstEdge> edges{{1, 0, 3.0}, {1, 2, 1.0}, {0, 2, 2.0}, {3, 4, 0.5}};
    const std::vector<MstEdge> forest = spanning_forest_of_edges(edges, 5);
    CHECK(forest.size() == 3);
    CHECK(forest[0].u == 3 && forest[0].v == 4 && forest[1].u == 1 && forest[1].v == 2);
    CHECK(forest[2].u == 0 && forest[2].v == 2 && forest[2].weight == 2.0);
    CHECK_THROWS(spanning_forest_of_edges({{0, 0, 1.0}}, 3), std::invalid_argument);
    CHECK_THROWS(spanning_forest_of_edges({{0, 3, 1.0}}, 3), std::invalid_argument);
}

/// kruskal_merge of two sorted lists (one edge in both) is the Kruskal forest of their union,
/// with single_linkage's rows when asked; edges that do not span are a logic_error.
static void test_kruskal_merge() {
    std::vector<MstEdge> a{{0, 1, 1.0}, {1, 2, 1.0}, {2, 3, 2.0}, {0, 3, 2.0}, {3, 4, 5.0}};
    std::vector<MstEdge> b{{0, 2, 1.0}, {2, 3, 2.0}, {1, 4, 3.0}, {2, 4, 3.0}};
    sort_edges(a);
    sort_edges(b);
    std::vector<MstEdge> both = a;
    both.insert(both.end(), b.begin(), b.end());
    const std::vector<MstEdge> expected = spanning_forest_of_edges(both, 5);
    LinkageWorkspace work;
    std::vector<LinkageRow> rows;
    for (const bool swapped : {false, true}) {
        const std::vector<MstEdge> tree = swapped ? kruskal_merge(b, a, 5, work, &rows, "test")
                                                  : kruskal_merge(a, b, 5, work, &rows, "test");
        CHECK(tree.size() == expected.size());
        for (size_t i = 0; i < tree.size() && i < expected.size(); ++i) {
            CHECK(tree[i].u == expected[i].u && tree[i].v == expected[i].v && tree[i].weight == expected[i].weight);
        }
        const std::vector<LinkageRow> linkage = single_linkage(tree, 5);
        CHECK(rows.size() == linkage.size());
        for (size_t i = 0; i < rows.size() && i < linkage.size(); ++i) {
            CHECK(rows[i].left == linkage[i].left && rows[i].right == linkage[i].right && rows[i].size == linkage[i].size);
        }
    }
    CHECK(kruskal_merge({}, {}, 1, work, nullptr, "test").empty());
    CHECK_THROWS(kruskal_merge(a, {}, 6, work, nullptr, "test"), std::logic_error);
}

int main() {
    RUN(test_matches_prim);
    RUN(test_initial_forest_is_kept);
    RUN(test_sizes_and_tiny_inputs);
    RUN(test_spanning_forest_of_edges);
    RUN(test_kruskal_merge);
    return TEST_RESULT();
}
