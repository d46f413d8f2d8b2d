// ctest for the incremental kernels: insert_rows() equals a refit (neighbour lists, core
// distances, MST weights by Prim), with duplicates and tied distances; bad sizes throw.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "brute_force.hpp"
#include "check.hpp"
#include "medscore/core_distance.hpp"
#include "medscore/incremental.hpp"
#include "medscore/mst.hpp"

using namespace medscore;
using namespace medscore_test;

namespace {

IncrementalGraph graph_of(const PointsView& x, int64_t k) {
    IncrementalGraph g;
    g.k = k;
    const Neighbors nn = nearest_neighbors(x, k, 2);
    g.knn_index = nn.indices;
    g.knn_dist = nn.distances;
    for (int64_t i = 0; i < x.rows; ++i) g.core.push_back(nn.distances[i * k + k - 1]);
    g.mst = minimum_spanning_tree(x, g.core, 2);
    return g;
}

std::vector<double> sorted_weights(const std::vector<MstEdge>& mst) {
    std::vector<double> w;
    for (const MstEdge& e : mst) w.push_back(e.weight);
    std::sort(w.begin(), w.end());
    return w;
}

/// Inserts rows [n_old, n) of x into the graph of its first n_old rows and compares with a refit.
void check_insert(const std::vector<double>& data, int64_t n, int64_t d, int64_t n_old, int64_t k) {
    const PointsView all{data.data(), n, d};
    const PointsView old_rows{data.data(), n_old, d};
    const IncrementalGraph got = insert_rows(all, n_old, graph_of(old_rows, k), 2);
    const IncrementalGraph want = graph_of(all, k);
    CHECK(got.knn_index == want.knn_index);
    CHECK(got.knn_dist == want.knn_dist);
    CHECK(got.core == want.core);
    CHECK(sorted_weights(got.mst) == prim_weights(all, want.core));
    CHECK(std::is_sorted(got.mst.begin(), got.mst.end(), [](const MstEdge& a, const MstEdge& b) {
        return std::tie(a.weight, a.u, a.v) < std::tie(b.weight, b.u, b.v);
    }));
}

void test_matches_refit() {
    for (uint64_t seed = 0; seed < 12; ++seed) {
        const int64_t d = 1 + static_cast<int64_t>(seed % 5) * 4, n = 300;
        const std::vector<double> x = blobs(n, d, 4, 6.0, seed);
        check_insert(x, n, d, 200, 5);   // a batch of half the memory
        check_insert(x, n, d, 299, 3);   // a single point
        check_insert(x, n, d, 40, 1);    // more new points than old ones
    }
}

void test_duplicates_and_ties() {
    // Points on a coarse grid: many equal distances, and every point repeated.
    const int64_t d = 2, n = 240;
    std::vector<double> x;
    for (int64_t i = 0; i < n; ++i) {
        x.push_back(static_cast<double>((i / 2) % 7));
        x.push_back(static_cast<double>((i / 2) / 7 % 5) * 0.5);
    }
    check_insert(x, n, d, 150, 4);
    check_insert(x, n, d, 3, 2);
}

void test_bad_sizes_throw() {
    const std::vector<double> x = blobs(20, 3, 2, 4.0, 1);
    const PointsView all{x.data(), 20, 3};
    const PointsView old_rows{x.data(), 10, 3};
    IncrementalGraph g = graph_of(old_rows, 3);
    CHECK_THROWS(insert_rows(all, 20, g), std::invalid_argument);  // nothing appended
    CHECK_THROWS(insert_rows(all, 1, g), std::invalid_argument);
    g.mst.pop_back();
    CHECK_THROWS(insert_rows(all, 10, g), std::invalid_argument);
    std::vector<int64_t> idx;
    std::vector<double> dist;
    CHECK_THROWS(nearest_neighbors_of_rows(all, {0, 25}, 3, idx, dist), std::invalid_argument);
    nearest_neighbors_of_rows(all, {4, 0}, 3, idx, dist, 1);
    for (int j = 0; j < 3; ++j) CHECK(dist[j] == brute_neighbors(all, 4, 3)[j].first);
}

}  // namespace

int main() {
    RUN(test_matches_refit);
    RUN(test_duplicates_and_ties);
    RUN(test_bad_sizes_throw);
    return report("test_incremental");
}
