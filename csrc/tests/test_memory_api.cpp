// The C++ API of the error memory: penalties, options, bad input, loaded states, norms.
// Checkpoint files are tested in test_checkpoint.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "medscore/medscore.hpp"
#include "medscore/unique.hpp"

using medscore_test::throws;

namespace {

void test_penalty_and_norm() {
    CHECK(medscore::default_penalty(0, 0.1, 0.2) == 0.0);
    CHECK(medscore::default_penalty(1, 0.1, 0.2) == 0.1 * std::log(2.0));
    CHECK(medscore::default_penalty(1000, 0.1, 0.2) == 0.2);
    // numpy's pairwise order differs from a plain loop from 9 terms on; values from numpy 2.
    std::vector<double> x(300);
    for (int i = 0; i < 300; ++i) x[i] = 1.0 + i / 3.0;
    CHECK(medscore::numpy_norm(x.data(), 136) == 0x1.39ae6e11411cfp+8);  // a plain loop gives ...1cep+8
    CHECK(medscore::numpy_norm(x.data(), 300) == 0x1.fa431dd6ea7a0p+9);  // a plain loop gives ...7a2p+9
    CHECK(medscore::numpy_norm(x.data(), 20) == 0x1.4855fbaaef6c9p+4);
}

void test_options() {
    const auto paper = medscore::MemoryOptions::preset("paper");
    CHECK(paper.store == medscore::StoreRule::all && paper.assign == medscore::AssignRule::paper && paper.penalize_noise);
    CHECK(throws<std::invalid_argument>([] { medscore::MemoryOptions::preset("fast"); }, "unknown preset"));
    auto o = medscore::MemoryOptions();
    o.min_cluster_size = 1;
    CHECK(throws<std::invalid_argument>([&] { medscore::Memory m(o); }, "min_cluster_size"));
    o = medscore::MemoryOptions();
    o.beta = std::numeric_limits<double>::quiet_NaN();
    CHECK(throws<std::invalid_argument>([&] { medscore::Memory m(o); }, "beta"));
    o = medscore::MemoryOptions();
    o.capacity = 0;
    CHECK(throws<std::invalid_argument>([&] { medscore::Memory m(o); }, "capacity"));
}

/// A step of 8 rollouts of key 7: rollouts 0-5 wrong, three on each of two mistakes (points
/// 10 apart on two parallel lines), 6-7 correct. Step `shift` moves them along the lines.
struct Step {
    std::vector<double> x;
    std::vector<int64_t> keys = std::vector<int64_t>(8, 7);
    std::vector<uint8_t> correct = {0, 0, 0, 0, 0, 0, 1, 1};
};

Step repeated_mistake(int shift) {
    Step s;
    for (int i = 0; i < 8; ++i) {
        const double mistake = i < 6 ? (i % 2) * 10.0 : 100.0 + 10.0 * i;
        s.x.insert(s.x.end(), {mistake, 1.0 + 0.25 * shift + (i / 2), 1.0, 1.0});
    }
    return s;
}

medscore::Penalties run(medscore::Memory& m, const Step& s, int64_t step, const uint8_t* valid = nullptr) {
    return m.penalize({s.x.data(), 8, 4}, s.keys.data(), s.correct.data(), valid, step);
}

void test_penalties_grow_with_repeats() {
    auto options = medscore::MemoryOptions();
    options.normalize = false;
    options.beta = 1.0;
    medscore::Memory memory(options);
    const auto first = run(memory, repeated_mistake(0), -1);
    const auto second = run(memory, repeated_mistake(2), -1);
    CHECK(memory.last_step() == 1 && memory.dim() == 4 && memory.keys() == std::vector<int64_t>{7});
    CHECK(second.penalties[6] == 0.0 && second.penalties[7] == 0.0);   // correct rollouts
    CHECK(second.labels[6] == -1 && second.sizes[6] == 0);              // not stored
    for (int i = 0; i < 6; ++i) {  // two clusters of 3, then of 6: penalty 0.1 ln(|C| + 1)
        CHECK(first.sizes[i] == 3 && first.penalties[i] == 0.1 * std::log(4.0));
        CHECK(second.sizes[i] == 6 && second.penalties[i] == 0.1 * std::log(7.0));
        CHECK(second.labels[i] == i % 2);  // clusters numbered by their earliest member
    }
    CHECK(memory.engine()->n_points() == 12);
    CHECK(memory.last_penalties() == second.penalties);
}

void test_bad_input_leaves_memory_unchanged() {
    medscore::Memory memory;
    run(memory, repeated_mistake(0), 3);
    const auto before = memory.snapshot();
    Step s = repeated_mistake(1);
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 2); }, "before the memory's last step"));
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, -2); }, "step must be in [0, 2^63 - 2]"));
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, INT64_MAX); }, "step must be in [0, 2^63 - 2]"));
    CHECK(throws<std::invalid_argument>([&] { memory.penalize({s.x.data(), 4, 8}, s.keys.data(), s.correct.data(), nullptr, 4); },
                                        "dimensions"));
    CHECK(throws<std::invalid_argument>([&] { memory.penalize({s.x.data(), 8, 4}, nullptr, s.correct.data(), nullptr, 4); },
                                        "keys is null"));
    s.correct[0] = 2;
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 4); }, "0 or 1"));
    s = repeated_mistake(1);
    s.x[5] = std::numeric_limits<double>::infinity();
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 4); }, "NaN or Inf in row 1"));
    s = repeated_mistake(1);
    for (int j = 0; j < 4; ++j) s.x[8 + j] = 0.0;
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 4); }, "all zeros"));
    // Finite rows without a unit row: a norm that overflows (the row would become all zeros)
    // or whose squares underflow to zero (issue 20, item 1).
    s = repeated_mistake(1);
    s.x[8] = 1e300;
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 4); }, "row 2 has a Euclidean norm that overflows"));
    s = repeated_mistake(1);
    for (int j = 0; j < 4; ++j) s.x[12 + j] = 1e-170;
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 4); }, "row 3 is all zeros (or its squares underflow)"));
    const auto after = memory.snapshot();
    CHECK(after.last_step == before.last_step && after.keys == before.keys && after.engine.points == before.engine.points);
}

void test_far_rows_without_normalisation() {
    // Un-normalised rows beyond 1e150 / sqrt(D) are refused (their squared distances could
    // overflow and the insert's bounds would break): before the fix a 1e300 row was stored.
    auto o = medscore::MemoryOptions();
    o.normalize = false;
    medscore::Memory memory(o);
    run(memory, repeated_mistake(0), 0);
    const auto before = memory.snapshot();
    Step s = repeated_mistake(1);
    s.x[4 * 4 + 1] = -1e300;
    CHECK(throws<std::invalid_argument>([&] { run(memory, s, 1); }, "row 4 has an entry of magnitude 1e+300"));
    s.x[4 * 4 + 1] = 0.5e150;  // 1e150 / sqrt(4): the largest magnitude accepted
    const auto after = memory.snapshot();
    CHECK(after.last_step == before.last_step && after.engine.points == before.engine.points &&
          after.engine.mst.size() == before.engine.mst.size());
    run(memory, s, 1);
    CHECK(memory.engine()->n_points() == 12);
}

void test_nan_rows_and_valid_mask() {
    Step s = repeated_mistake(0);
    for (int j = 0; j < 4; ++j) s.x[4 + j] = std::numeric_limits<double>::quiet_NaN();  // row 1: no fingerprint
    medscore::Memory strict;
    CHECK(throws<std::invalid_argument>([&] { run(strict, s, 0); }, "row 1"));
    auto o = medscore::MemoryOptions();
    o.nan_rows = medscore::NanRows::skip;
    medscore::Memory skipping(o);
    const auto p = run(skipping, s, 0);
    CHECK(p.penalties[1] == 0.0 && p.labels[1] == -1 && skipping.engine()->n_points() == 5);
    const std::vector<uint8_t> valid = {1, 0, 1, 1, 1, 1, 1, 1};
    const auto q = run(strict, s, 0, valid.data());
    CHECK(q.penalties == p.penalties && q.labels == p.labels);
}

void test_loaded_state_is_checked_for_structure() {
    // States whose arrays are in range but whose MST is no spanning tree of the points, or whose
    // weights or labels are not those of the points, are refused at load (issue 20, item 5).
    for (const bool normalize : {true, false}) {
        auto o = medscore::MemoryOptions::preset("paper");
        o.normalize = normalize;
        medscore::Memory memory(o);
        run(memory, repeated_mistake(0), 0);
        run(memory, repeated_mistake(1), 1);
        const medscore::MemorySnapshot good = memory.snapshot();
        CHECK(good.engine.mst.size() >= 4);
        medscore::Memory::from_snapshot(good);  // the unchanged state loads
        auto refused = [&](medscore::MemorySnapshot s, const char* needle) {
            CHECK(throws<std::invalid_argument>([&] { medscore::Memory::from_snapshot(s); }, needle));
        };
        medscore::MemorySnapshot twice = good;
        twice.engine.mst[1] = twice.engine.mst[0];  // still n - 1 edges, one written twice
        refused(twice, "written twice");
        medscore::MemorySnapshot cycle = good;
        // An edge closing a cycle instead of a tree edge: a heavier edge over already joined points.
        cycle.engine.mst[2] = medscore::MstEdge{cycle.engine.mst[0].u, cycle.engine.mst[1].v, 1e9};
        std::sort(cycle.engine.mst.begin(), cycle.engine.mst.begin() + static_cast<long>(cycle.engine.mst.size()) / 2,
                  [](const medscore::MstEdge& a, const medscore::MstEdge& b) { return a.weight < b.weight; });
        CHECK(throws<std::invalid_argument>([&] { medscore::Memory::from_snapshot(cycle); }));
        medscore::MemorySnapshot weight = good;
        weight.engine.mst[0].weight = std::nextafter(weight.engine.mst[0].weight, 0.0);
        refused(weight, "does not have the weight of its points");
        medscore::MemorySnapshot labels = good;
        for (int64_t& l : labels.engine.labels) l = -1;  // numbered, but not the clustering
        refused(labels, "the labels are not the clustering of the MST");
    }
}

}  // namespace

// unique_values against a plain sort-based answer: dense ranges (the table), wide ones
// (the sort), the int64 extremes, repeats and the empty array.
void test_unique_values() {
    auto expected = [](const std::vector<int64_t>& v) {
        std::vector<int64_t> u = v;
        std::sort(u.begin(), u.end());
        u.erase(std::unique(u.begin(), u.end()), u.end());
        return u;
    };
    const int64_t big = std::numeric_limits<int64_t>::max(), small = std::numeric_limits<int64_t>::min();
    const std::vector<std::vector<int64_t>> cases = {
        {}, {7}, {5, 3, 5, 9, 3}, {-4, -4, -1, -3}, {small, big, 0, small}, {big - 1, big, big}, {small, small + 2},
        {0, 1000000, 3, 1000000}, {40, 12, 12, 40, 41, 13, 12},
    };
    for (const auto& v : cases) {
        const medscore::UniqueValues u = medscore::unique_values(v.data(), static_cast<int64_t>(v.size()));
        CHECK(u.values == expected(v));
        CHECK(u.inverse.size() == v.size());
        for (size_t i = 0; i < v.size(); ++i) CHECK(u.values[u.inverse[i]] == v[i]);
    }
}

int main() {
    test_unique_values();
    test_penalty_and_norm();
    test_options();
    test_penalties_grow_with_repeats();
    test_bad_input_leaves_memory_unchanged();
    test_far_rows_without_normalisation();
    test_nan_rows_and_valid_mask();
    test_loaded_state_is_checked_for_structure();
    return medscore_test::report("test_memory_api");
}
