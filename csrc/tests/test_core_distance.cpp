// Stage 1: exact k nearest neighbours and core distances (docs/SPEC.md).
#include <stdexcept>
#include <vector>

#include "brute_force.hpp"
#include "check.hpp"
#include "medscore/core_distance.hpp"

using namespace medscore;

static void test_hand_checked_line() {
    // Row 2 (x = 3) has rows 0 and 3 both at distance 3: row 0 comes first.
    const std::vector<double> x{0.0, 1.0, 3.0, 6.0, 10.0};
    const Neighbors nn = nearest_neighbors(PointsView{x.data(), 5, 1}, 2);
    CHECK((nn.indices == std::vector<int64_t>{1, 2, 0, 2, 1, 0, 2, 4, 3, 2}));
    CHECK((nn.distances == std::vector<double>{1, 3, 1, 2, 2, 3, 3, 4, 4, 7}));
    CHECK((core_distances(PointsView{x.data(), 5, 1}, 2) == std::vector<double>{3, 2, 3, 4, 7}));
}

static void test_ties_and_duplicates() {
    // Rows 1 and 2 are both at distance 1 from row 0: the smaller index comes first.
    const std::vector<double> x{0.0, 1.0, -1.0};
    const Neighbors nn = nearest_neighbors(PointsView{x.data(), 3, 1}, 2);
    CHECK(nn.indices[0] == 1 && nn.indices[1] == 2);
    // Duplicates count, at distance 0.
    const std::vector<double> dup{5.0, 5.0, 5.0, 0.0};
    CHECK((core_distances(PointsView{dup.data(), 4, 1}, 2) == std::vector<double>{0, 0, 0, 5}));
    // More equal points than a leaf holds, in raw and in projected coordinates.
    for (const int64_t d : {1, 20}) {
        const std::vector<double> same(static_cast<size_t>(100 * d), 1.5);
        CHECK((core_distances(PointsView{same.data(), 100, d}, 5) == std::vector<double>(100, 0.0)));
    }
}

static void test_clipping_and_sizes() {
    CHECK(effective_min_samples(5, 3) == 2);
    CHECK(effective_min_samples(1, 1) == 1);
    CHECK(effective_min_samples(4, 10) == 4);
    CHECK_THROWS(effective_min_samples(0, 10), std::invalid_argument);
    const std::vector<double> one{1.0, 2.0};
    CHECK((core_distances(PointsView{one.data(), 1, 2}, 5) == std::vector<double>{0.0}));
    const std::vector<double> x{0.0, 1.0, 2.0};
    CHECK_THROWS(nearest_neighbors(PointsView{x.data(), 3, 1}, 3), std::invalid_argument);
    CHECK_THROWS(nearest_neighbors(PointsView{x.data(), 3, 1}, 0), std::invalid_argument);
    CHECK_THROWS(core_distances(PointsView{nullptr, 0, 1}, 1), std::invalid_argument);
}

static void test_matches_brute_force() {
    // Low dimension (raw kd-tree), high dimension (projected tree), and rounded data (ties).
    for (const int64_t d : {2, 7, 24, 64}) {
        for (const bool rounded : {false, true}) {
            std::vector<double> x = medscore_test::blobs(300, d, 4, 6.0, static_cast<uint64_t>(d));
            if (rounded) {
                for (double& v : x) v = static_cast<double>(static_cast<int64_t>(v));
            }
            const PointsView view{x.data(), 300, d};
            const int64_t k = 6;
            const Neighbors nn = nearest_neighbors(view, k, 2);
            bool same = true;
            for (int64_t i = 0; i < 300; ++i) {
                const auto expected = medscore_test::brute_neighbors(view, i, k);
                for (int64_t j = 0; j < k; ++j) {
                    same = same && nn.indices[i * k + j] == expected[j].second &&
                           nn.distances[i * k + j] == expected[j].first;
                }
            }
            CHECK(same);
        }
    }
}

int main() {
    RUN(test_hand_checked_line);
    RUN(test_ties_and_duplicates);
    RUN(test_clipping_and_sizes);
    RUN(test_matches_brute_force);
    return TEST_RESULT();
}
