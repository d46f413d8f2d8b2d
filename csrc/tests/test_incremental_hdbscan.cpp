// ctest for the incremental engine (medscore::IncrementalHDBSCAN): after every insert and
// removal its core distances, MST weights and partition equal a batch hdbscan() of the live
// points; capacity evicts the oldest; refused updates change nothing; a state round-trips.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/hdbscan.hpp"
#include "medscore/incremental_hdbscan.hpp"

using namespace medscore;
using namespace medscore_test;

namespace {

std::vector<double> sorted_weights(const std::vector<MstEdge>& mst) {
    std::vector<double> w;
    for (const MstEdge& e : mst) w.push_back(e.weight);
    std::sort(w.begin(), w.end());
    return w;
}

/// Whether two labelings are the same partition (noise to noise, clusters one to one).
bool same_partition(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    if (a.size() != b.size()) return false;
    std::map<int64_t, int64_t> ab, ba;
    for (size_t i = 0; i < a.size(); ++i) {
        if ((a[i] < 0) != (b[i] < 0)) return false;
        if (a[i] < 0) continue;
        if (ab.emplace(a[i], b[i]).first->second != b[i]) return false;
        if (ba.emplace(b[i], a[i]).first->second != a[i]) return false;
    }
    return true;
}

void check_equals_refit(const IncrementalHDBSCAN& engine) {
    const int64_t n = engine.size();
    if (n == 0) return;
    HdbscanParams p;
    p.min_cluster_size = engine.params().min_cluster_size;
    p.min_samples = engine.params().min_samples;
    p.method = engine.params().method;
    p.n_threads = 2;
    const HdbscanResult refit = hdbscan(PointsView{engine.points().data(), n, engine.dim()}, p);
    CHECK(refit.core_distances == engine.graph().core);
    CHECK(sorted_weights(refit.mst) == sorted_weights(engine.graph().mst));
    CHECK(same_partition(refit.selection.labels, engine.labels()));
    CHECK(refit.selection.probabilities == engine.probabilities());
}

std::vector<double> blobs(std::mt19937_64& rng, int64_t n, int64_t dim, bool rounded) {
    std::normal_distribution<double> normal;
    std::uniform_int_distribution<int> centre(0, 2);
    std::vector<double> x(static_cast<size_t>(n * dim));
    for (int64_t i = 0; i < n; ++i) {
        const double shift = 6.0 * centre(rng);
        for (int64_t j = 0; j < dim; ++j) {
            const double v = shift + normal(rng);
            x[i * dim + j] = rounded ? std::round(v) : v;
        }
    }
    return x;
}

void test_stream_equals_refit() {
    for (uint64_t seed = 0; seed < 6; ++seed) {
        std::mt19937_64 rng(seed);
        IncrementalParams p;
        p.min_cluster_size = 3 + static_cast<int64_t>(seed % 3);
        p.min_samples = 1 + static_cast<int64_t>(seed % 4);
        p.method = seed % 2 ? SelectionMethod::leaf : SelectionMethod::eom;
        p.capacity = seed == 5 ? 70 : 0;
        p.n_threads = 2;
        IncrementalHDBSCAN engine(p);
        const int64_t dim = 1 + static_cast<int64_t>(seed);
        for (int step = 0; step < 8; ++step) {
            const int64_t size = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(engine.size(), 2)));
            const std::vector<double> x = blobs(rng, size, dim, seed % 2 == 1);
            const int64_t first = engine.insert(PointsView{x.data(), size, dim});
            CHECK(engine.ids().back() == first + size - 1);
            if (p.capacity > 0) CHECK(engine.size() <= p.capacity);
            check_equals_refit(engine);
            if (step % 3 == 2 && engine.size() > 4) {
                std::vector<int64_t> gone;
                for (size_t i = 0; i < engine.ids().size(); i += 3) gone.push_back(engine.ids()[i]);
                engine.remove(gone);
                check_equals_refit(engine);
            }
        }
    }
}

void test_small_inserts_grow_the_tree() {
    // After one large batch, many small ones: the engine's kd-tree grows (KdTree::insert) and
    // is rebuilt only when a leaf fills; 20-d takes the projected path. Some rows land far
    // outside the first batch's boxes.
    for (const int64_t dim : {3, 20}) {
        std::mt19937_64 rng(static_cast<uint64_t>(dim));
        IncrementalParams p;
        p.min_cluster_size = 4;
        p.min_samples = 3;
        p.n_threads = 2;
        IncrementalHDBSCAN engine(p);
        const std::vector<double> first = blobs(rng, 200, dim, false);
        engine.insert(PointsView{first.data(), 200, dim});
        for (int step = 0; step < 60; ++step) {
            const int64_t size = 1 + static_cast<int64_t>(rng() % 4);
            std::vector<double> x = blobs(rng, size, dim, step % 5 == 1);
            if (step % 3 == 2) {
                for (double& v : x) v += 60.0;
            }
            engine.insert(PointsView{x.data(), size, dim});
            if (step % 6 == 5) check_equals_refit(engine);
        }
        check_equals_refit(engine);
    }
}

void test_refused_updates_change_nothing() {
    std::mt19937_64 rng(11);
    IncrementalParams p;
    p.min_cluster_size = 4;
    p.min_samples = 3;
    IncrementalHDBSCAN engine(p);
    const std::vector<double> x = blobs(rng, 50, 3, false);
    engine.insert(PointsView{x.data(), 50, 3});
    const IncrementalState before = engine.state();
    std::vector<double> bad = blobs(rng, 4, 3, false);
    bad[7] = std::numeric_limits<double>::quiet_NaN();
    CHECK(throws<std::invalid_argument>([&] { engine.insert(PointsView{bad.data(), 4, 3}); }, "NaN"));
    CHECK(throws<std::invalid_argument>([&] { engine.insert(PointsView{bad.data(), 3, 4}); }, "columns"));
    CHECK(throws<std::invalid_argument>([&] { engine.remove({1, 1}); }, "repeated"));
    CHECK(throws<std::invalid_argument>([&] { engine.remove({5, 500}); }, "unknown"));
    CHECK(engine.state().points == before.points && engine.state().ids == before.ids);
    CHECK(engine.state().labels == before.labels && engine.state().graph.mst.size() == before.graph.mst.size());
    CHECK(engine.next_id() == 50);
}

void test_state_round_trips() {
    std::mt19937_64 rng(3);
    IncrementalParams p;
    p.min_cluster_size = 3;
    p.min_samples = 2;
    IncrementalHDBSCAN engine(p);
    const std::vector<double> x = blobs(rng, 40, 2, false);
    engine.insert(PointsView{x.data(), 40, 2});
    engine.remove({0, 7});
    IncrementalHDBSCAN copy(p, engine.state());
    const std::vector<double> more = blobs(rng, 5, 2, false);
    engine.insert(PointsView{more.data(), 5, 2});
    copy.insert(PointsView{more.data(), 5, 2});
    CHECK(copy.labels() == engine.labels() && copy.probabilities() == engine.probabilities());
    IncrementalState broken = engine.state();
    broken.ids.pop_back();
    CHECK(throws<std::invalid_argument>([&] { IncrementalHDBSCAN(p, broken); }, "do not match"));
}

void test_emptied_engine_starts_again() {
    IncrementalParams p;
    p.min_cluster_size = 2;
    p.min_samples = 1;
    IncrementalHDBSCAN engine(p);
    const double one[] = {1.0, 2.0};
    engine.insert(PointsView{one, 1, 2});
    CHECK(engine.labels() == std::vector<int64_t>{-1});
    engine.remove({0});
    CHECK(engine.size() == 0);
    const double three[] = {0.0, 0.0, 0.0, 1.0, 5.0, 5.0};
    CHECK(engine.insert(PointsView{three, 3, 2}) == 1);
    check_equals_refit(engine);
}

}  // namespace

int main() {
    RUN(test_stream_equals_refit);
    RUN(test_small_inserts_grow_the_tree);
    RUN(test_refused_updates_change_nothing);
    RUN(test_state_round_trips);
    RUN(test_emptied_engine_starts_again);
    return report("test_incremental_hdbscan");
}
