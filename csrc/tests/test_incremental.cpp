// ctest for the incremental kernels: insert_rows() equals a refit (neighbour lists, core
// distances, MST weights by Prim), with duplicates and tied distances; bad sizes throw;
// bridge_edges() (range-filtered) returns every edge its defining rule keeps, evaluated by
// brute force, each with its exact weight.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "brute_force.hpp"
#include "check.hpp"
#include "medscore/core_distance.hpp"
#include "medscore/distance.hpp"
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

void test_new_cluster_far_away() {
    // The new points form their own blob: their k nearest neighbours are all new, so the
    // one-pass range bound takes its old point from a kd-tree node far above them.
    const int64_t d = 3, n = 200;
    std::vector<double> x = blobs(n, d, 1, 1.0, 7);
    for (int64_t i = 120 * d; i < n * d; ++i) x[i] += 50.0;
    check_insert(x, n, d, 120, 4);
    check_insert(x, n, d, 120, 1);
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

/// The bridge rule of csrc/incremental_bridges.cpp by brute force: (q, p) is kept iff no other
/// old q' with minimax_T(q, q') < W(q, p) has (W(q', p), q') < (W(q, p), q).
std::vector<MstEdge> brute_bridges(const PointsView& x, int64_t n_old, const std::vector<double>& core,
                                   const std::vector<MstEdge>& tree) {
    // minimax[a * n_old + b]: the height at which T joins a and b (Kruskal over sorted T).
    std::vector<double> minimax(static_cast<size_t>(n_old * n_old), 0.0);
    std::vector<int64_t> comp(static_cast<size_t>(n_old));
    for (int64_t i = 0; i < n_old; ++i) comp[i] = i;
    for (const MstEdge& e : tree) {
        const int64_t a = comp[e.u], b = comp[e.v];
        for (int64_t i = 0; i < n_old; ++i) {
            for (int64_t j = 0; j < n_old; ++j) {
                if (comp[i] == a && comp[j] == b) minimax[i * n_old + j] = minimax[j * n_old + i] = e.weight;
            }
        }
        for (int64_t& c : comp) c = c == b ? a : c;
    }
    std::vector<MstEdge> kept;
    for (int64_t p = n_old; p < x.rows; ++p) {
        std::vector<double> w(static_cast<size_t>(n_old));
        for (int64_t q = 0; q < n_old; ++q) {
            w[q] = std::max({core[p], core[q], euclidean_distance(x.row(p), x.row(q), x.cols)});
        }
        for (int64_t q = 0; q < n_old; ++q) {
            bool beaten = false;
            for (int64_t r = 0; r < n_old && !beaten; ++r) {
                beaten = r != q && minimax[q * n_old + r] < w[q] && std::tie(w[r], r) < std::tie(w[q], q);
            }
            if (!beaten) kept.push_back(MstEdge{q, p, w[q]});
        }
    }
    return kept;
}

/// Every edge of `kept` is in `got`, and every edge of `got` is an edge (q, p) from an old to
/// a new row with its bit-defined mutual-reachability weight.
bool covers(const PointsView& x, int64_t n_old, const std::vector<double>& core, std::vector<MstEdge> got,
            const std::vector<MstEdge>& kept) {
    auto key = [](const MstEdge& e) { return std::tie(e.v, e.u, e.weight); };
    auto less = [&](const MstEdge& e, const MstEdge& f) { return key(e) < key(f); };
    std::sort(got.begin(), got.end(), less);
    for (const MstEdge& e : kept) {
        if (!std::binary_search(got.begin(), got.end(), e, less)) return false;
    }
    for (const MstEdge& e : got) {
        if (e.u < 0 || e.u >= n_old || e.v < n_old || e.v >= x.rows) return false;
        const double w = std::max({core[e.u], core[e.v], euclidean_distance(x.row(e.u), x.row(e.v), x.cols)});
        if (w != e.weight) return false;
    }
    return true;
}

void check_bridges(const std::vector<double>& data, int64_t n, int64_t d, int64_t n_old, int64_t k) {
    const PointsView all{data.data(), n, d};
    const IncrementalGraph g = graph_of(all, k);  // the new core distances of all points
    const PointsView old_rows{data.data(), n_old, d};
    const std::vector<double> old_core(g.core.begin(), g.core.begin() + n_old);
    const std::vector<MstEdge> tree = minimum_spanning_tree(old_rows, old_core, 2);
    CHECK(covers(all, n_old, g.core, bridge_edges(all, n_old, g.core, tree, 2), brute_bridges(all, n_old, g.core, tree)));
}

void test_bridges_match_their_rule() {
    for (uint64_t seed = 0; seed < 8; ++seed) {
        // Blobs in 1 to 33 dimensions (projected kd-tree bounds above 16), spread wide enough
        // that the range filter R = max(w0, root height) cuts off whole blobs.
        const int64_t d = 1 + static_cast<int64_t>(seed) * 4, n = 160;
        check_bridges(blobs(n, d, 4, 12.0, seed), n, d, 120, 1 + static_cast<int64_t>(seed % 3));
    }
}

void test_bridges_at_the_range_margin() {
    // Integer points on a line: weights tie with each other and with the root height R.
    // Old points 0, 1, 2, 10 (k = 1: root height 8); new point 18 has W = 8 = R to point 10,
    // and 26 duplicates it; new 6 ties with 2 and 10 (distance 4).
    const std::vector<double> line{0, 1, 2, 10, 18, 26, 6, 18};
    check_bridges(line, 8, 1, 4, 1);
    check_bridges(line, 8, 1, 5, 1);
    // Every point twice on a small grid: duplicates (W = core) and many equal weights.
    std::vector<double> grid;
    for (int64_t i = 0; i < 120; ++i) {
        grid.push_back(static_cast<double>((i / 2) % 6) * 3.0);
        grid.push_back(static_cast<double>((i / 2) / 6 % 4) * 4.0);
    }
    for (const int64_t k : {1, 2, 3}) check_bridges(grid, 120, 2, 70, k);
    check_bridges(grid, 120, 2, 2, 1);
}

void test_bridges_with_integer_ties() {
    // Small integer coordinates: weights tie with the nearby edge w0 and with tree heights,
    // on both sides of the (weight, index) order, so the filters are checked at their bounds.
    for (uint64_t seed = 0; seed < 24; ++seed) {
        const int64_t d = 1 + static_cast<int64_t>(seed % 2), n = 48;
        std::vector<double> x(static_cast<size_t>(n * d));
        uint64_t state = seed * 2654435761u + 12345u;
        for (double& v : x) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            v = static_cast<double>((state >> 33) % 5);
        }
        const int64_t n_old = 8 + static_cast<int64_t>(seed * 5 % 32), k = 1 + static_cast<int64_t>(seed % 3);
        check_bridges(x, n, d, n_old, k);
    }
}

void test_bridges_when_every_weight_is_infinite() {
    // A new point so far away that its squared distances overflow: its core distance and every
    // weight to the old points are infinite. The lightest old point is then decided by index
    // alone (it used to be a sentinel -1, used as an index: issue 20, item 1).
    const std::vector<double> x{0, 0, 1, 0, 0, 1, 1e300, 0, 1, 1};
    const PointsView all{x.data(), 5, 2};
    const std::vector<double> core{1, 1, 1, std::numeric_limits<double>::infinity(), 1};
    const PointsView old_rows{x.data(), 3, 2};
    const std::vector<double> old_core(core.begin(), core.begin() + 3);
    const std::vector<MstEdge> tree = minimum_spanning_tree(old_rows, old_core, 1);
    OldNeighborhoods near(2);
    for (int64_t q = 0; q < 3; ++q) {
        near[0].emplace_back(std::sqrt(squared_distance(all.row(3), all.row(q), 2)), q);
        near[1].emplace_back(std::sqrt(squared_distance(all.row(4), all.row(q), 2)), q);
    }
    const std::vector<MstEdge> edges = bridge_edges(3, core, tree, near, 1);
    int64_t infinite = 0;
    for (const MstEdge& e : edges) {
        CHECK(e.u >= 0 && e.u < 3 && (e.v == 3 || e.v == 4));
        infinite += std::isinf(e.weight) ? 1 : 0;
    }
    CHECK(infinite >= 1);
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
    RUN(test_new_cluster_far_away);
    RUN(test_duplicates_and_ties);
    RUN(test_bridges_match_their_rule);
    RUN(test_bridges_at_the_range_margin);
    RUN(test_bridges_with_integer_ties);
    RUN(test_bridges_when_every_weight_is_infinite);
    RUN(test_bad_sizes_throw);
    return report("test_incremental");
}
