// The keyed memory's exact MST updates: the kd-tree insert and the MST by halves give the
// same trees, bit for bit, as the direct insert and Prim's algorithm (ties and duplicates too).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "check.hpp"
#include "medscore/hdbscan.hpp"
#include "medscore/memory.hpp"

namespace {

using medscore::MstEdge;
using medscore::PointsView;

/// Unit vectors around `centres` random centres in `dim` dimensions; with `duplicates`, about
/// a quarter of the rows repeat an earlier row exactly (ties of weight 0 and equal weights).
std::vector<double> clustered(int64_t n, int64_t dim, int64_t centres, bool duplicates, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<double> c(static_cast<size_t>(centres * dim));
    for (double& v : c) v = normal(rng);
    std::vector<double> x(static_cast<size_t>(n * dim));
    for (int64_t i = 0; i < n; ++i) {
        double* row = x.data() + i * dim;
        if (duplicates && i > 0 && rng() % 4 == 0) {
            const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i));
            for (int64_t k = 0; k < dim; ++k) row[k] = x[j * dim + k];
            continue;
        }
        const int64_t centre = static_cast<int64_t>(rng() % static_cast<uint64_t>(centres));
        double norm = 0.0;
        for (int64_t k = 0; k < dim; ++k) {
            row[k] = c[centre * dim + k] + 0.1 * normal(rng);
            norm += row[k] * row[k];
        }
        for (int64_t k = 0; k < dim; ++k) row[k] /= std::sqrt(norm);
    }
    return x;
}

bool same_tree(const std::vector<MstEdge>& a, const std::vector<MstEdge>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].u != b[i].u || a[i].v != b[i].v || a[i].weight != b[i].weight) return false;
    }
    return true;
}

void test_halves_and_kdtree_insert_match_the_direct_trees() {
    const int64_t dim = 14;
    for (const bool duplicates : {false, true}) {
        for (const int64_t n_old : {1, 300, 1500}) {
            for (const int64_t m : {1, 7, 700}) {
                const std::vector<double> x = clustered(n_old + m, dim, 20, duplicates, 7 + n_old + m);
                const PointsView all{x.data(), n_old + m, dim}, old{x.data(), n_old, dim};
                const std::vector<MstEdge> prim = medscore::euclidean_mst(old);
                CHECK(same_tree(medscore::euclidean_mst_by_halves(old, 2), prim));
                const std::vector<MstEdge> direct = medscore::insert_into_mst(prim, all, n_old);
                CHECK(same_tree(medscore::insert_into_mst_by_kdtree(prim, all, n_old, 2), direct));
                CHECK(same_tree(direct, medscore::euclidean_mst(all)));
            }
        }
    }
}

/// Small keys on an integer grid (many equal distances: n-ary merges) with duplicates: the
/// memory's labels (its fused condense + EOM selection, after one refit step and after an
/// insert step) equal the shared stages' labels of a batch fit, numbered by earliest member.
void test_key_labels_match_the_shared_stages_under_ties() {
    std::mt19937_64 rng(11);
    for (int trial = 0; trial < 60; ++trial) {
        const int64_t dim = 1 + trial % 3, n_first = 2 + trial % 40, n_second = trial % 9;
        const int64_t n = n_first + n_second, grid = 2 + trial % 4;
        std::vector<double> x(static_cast<size_t>(n * dim));
        for (double& v : x) v = static_cast<double>(rng() % static_cast<uint64_t>(grid));
        medscore::MemoryParams params;
        params.dim = dim;
        params.hdbscan.min_cluster_size = 2 + trial % 4;
        params.hdbscan.min_samples = 1;
        params.assign = medscore::AssignRule::exact;
        params.n_threads = 1;
        medscore::KeyedMemory memory(params);
        const std::vector<int64_t> keys(static_cast<size_t>(n), 0);
        memory.penalize_step(PointsView{x.data(), n_first, dim}, keys.data(), 0);
        if (n_second > 0) memory.penalize_step(PointsView{x.data() + n_first * dim, n_second, dim}, keys.data(), 1);
        std::vector<int64_t> steps(static_cast<size_t>(n), 0);
        for (int64_t i = n_first; i < n; ++i) steps[i] = 1;
        medscore::HdbscanParams batch = params.hdbscan;
        batch.n_threads = 1;
        std::vector<int64_t> expected = medscore::hdbscan(PointsView{x.data(), n, dim}, batch).selection.labels;
        int64_t noise = 0;
        medscore::number_clusters(expected, PointsView{x.data(), n, dim}, steps.data(), noise);
        CHECK(memory.key_state(0).labels == expected);
        CHECK(memory.key_state(0).noise == noise);
    }
}

void test_bad_input() {
    const std::vector<double> x = clustered(10, 3, 2, false, 1);
    const PointsView all{x.data(), 10, 3};
    CHECK(medscore_test::throws<std::invalid_argument>(
        [&] { medscore::insert_into_mst_by_kdtree({}, all, 5, 1); }, "insert_into_mst_by_kdtree"));
    CHECK(medscore_test::throws<std::invalid_argument>(
        [&] { medscore::euclidean_mst_by_halves(PointsView{x.data(), 0, 3}, 1); }, "euclidean_mst_by_halves"));
}

}  // namespace

int main() {
    test_halves_and_kdtree_insert_match_the_direct_trees();
    test_key_labels_match_the_shared_stages_under_ties();
    test_bad_input();
    return medscore_test::report("test_memory_insert");
}
