// The whole pipeline: two separated groups, tiny inputs, parameter checks.
#include <stdexcept>
#include <vector>

#include "brute_force.hpp"
#include "check.hpp"
#include "medscore/hdbscan.hpp"

using namespace medscore;

static void test_two_groups() {
    std::vector<double> x;
    for (int i = 0; i < 12; ++i) x.push_back(0.1 * i + 0.001 * i * i);
    for (int i = 0; i < 12; ++i) x.push_back(100.0 + 0.1 * i + 0.002 * i * i);
    HdbscanParams params;
    params.min_cluster_size = 4;
    params.min_samples = 3;
    const HdbscanResult r = hdbscan(PointsView{x.data(), 24, 1}, params);
    CHECK(r.core_distances.size() == 24 && r.mst.size() == 23 && r.linkage.size() == 23);
    CHECK(r.selection.persistence.size() == 2);
    bool grouped = true;
    for (int i = 0; i < 24; ++i) grouped = grouped && r.selection.labels[i] == (i < 12 ? 0 : 1);
    CHECK(grouped);
}

static void test_threads_do_not_change_results() {
    const std::vector<double> x = medscore_test::blobs(400, 32, 5, 8.0, 3);
    HdbscanParams params;
    params.n_threads = 1;
    const HdbscanResult one = hdbscan(PointsView{x.data(), 400, 32}, params);
    params.n_threads = 3;
    const HdbscanResult three = hdbscan(PointsView{x.data(), 400, 32}, params);
    CHECK(one.selection.labels == three.selection.labels);
    CHECK(one.core_distances == three.core_distances);
    bool same_mst = one.mst.size() == three.mst.size();
    for (size_t i = 0; same_mst && i < one.mst.size(); ++i) {
        same_mst = one.mst[i].u == three.mst[i].u && one.mst[i].v == three.mst[i].v &&
                   one.mst[i].weight == three.mst[i].weight;
    }
    CHECK(same_mst);
}

static void test_tiny_and_bad_input() {
    const std::vector<double> one{1.0, 2.0};
    const HdbscanResult r = hdbscan(PointsView{one.data(), 1, 2}, HdbscanParams{});
    CHECK((r.selection.labels == std::vector<int64_t>{-1}) && r.condensed.empty() && r.mst.empty());
    HdbscanParams bad;
    bad.min_cluster_size = 1;
    CHECK_THROWS(hdbscan(PointsView{one.data(), 1, 2}, bad), std::invalid_argument);
    bad = HdbscanParams{};
    bad.epsilon = -0.5;
    CHECK_THROWS(hdbscan(PointsView{one.data(), 1, 2}, bad), std::invalid_argument);
    CHECK_THROWS(hdbscan(PointsView{one.data(), 0, 2}, HdbscanParams{}), std::invalid_argument);
    CHECK_THROWS(hdbscan_from_mst({0.0, 0.0}, {}, 2, HdbscanParams{}), std::invalid_argument);
}

int main() {
    RUN(test_two_groups);
    RUN(test_threads_do_not_change_results);
    RUN(test_tiny_and_bad_input);
    return TEST_RESULT();
}
