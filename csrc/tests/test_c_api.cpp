// The C API: every bad argument (NULL handle or array, wrong size, NaN, bad option, bad file)
// gives an error code and a message and leaves the memory as it was; concurrent calls on one
// handle are serialised. Built under ASan + UBSan in CI.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "medscore/medscore.h"

namespace {

constexpr int64_t kN = 6, kDim = 3;

struct Batch {
    std::vector<double> x;
    std::vector<int64_t> keys{5, 5, 5, 9, 9, 9};
    std::vector<uint8_t> correct{0, 0, 0, 0, 0, 1};
    std::vector<double> penalties = std::vector<double>(kN, -1.0);
};

Batch batch(int seed) {
    Batch b;
    for (int i = 0; i < kN; ++i) {
        for (int j = 0; j < kDim; ++j) b.x.push_back(1.0 + (i % 2) * (j == 0 ? 5.0 : 0.0) + 0.01 * ((i + j + seed) % 5));
    }
    return b;
}

medscore_status penalize(medscore_memory_t* m, Batch& b, int64_t step) {
    return medscore_memory_penalize(m, b.x.data(), kN, kDim, b.keys.data(), b.correct.data(), nullptr, step,
                                    b.penalties.data(), nullptr, nullptr);
}

bool contains(const char* text, const char* needle) { return text && std::strstr(text, needle) != nullptr; }

medscore_memory_t* new_memory() {
    medscore_memory_options o;
    medscore_memory_options_init(&o, nullptr);
    o.n_threads = 1;
    medscore_memory_t* m = nullptr;
    medscore_memory_create(&o, &m);
    return m;
}

medscore_memory_info info_of(medscore_memory_t* m) {
    medscore_memory_info info{};
    CHECK(medscore_memory_get_info(m, &info) == MEDSCORE_OK);
    return info;
}

void test_options_and_create() {
    medscore_memory_options o;
    CHECK(medscore_memory_options_init(&o, nullptr) == MEDSCORE_OK);
    CHECK(o.keyed == 1 && o.store_all == 0 && o.min_cluster_size == 2 && o.min_samples == 1 && o.alpha == 0.1 &&
          o.beta == 0.2 && o.max_age == -1 && o.assign == MEDSCORE_ASSIGN_EXACT);
    CHECK(medscore_memory_options_init(&o, "paper") == MEDSCORE_OK);
    CHECK(o.store_all == 1 && o.assign == MEDSCORE_ASSIGN_PAPER && o.penalize_noise == 1);
    CHECK(medscore_memory_options_init(&o, "nope") == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(contains(medscore_last_error(), "unknown preset"));
    CHECK(medscore_memory_options_init(nullptr, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);

    medscore_memory_t* m = reinterpret_cast<medscore_memory_t*>(&o);  // must be overwritten with NULL
    CHECK(medscore_memory_create(nullptr, &m) == MEDSCORE_ERROR_INVALID_ARGUMENT && m == nullptr);
    CHECK(medscore_memory_create(&o, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    const auto bad_option = [&](void (*edit)(medscore_memory_options&), const char* needle) {
        medscore_memory_options b;
        medscore_memory_options_init(&b, nullptr);
        edit(b);
        medscore_memory_t* h = nullptr;
        const bool refused = medscore_memory_create(&b, &h) == MEDSCORE_ERROR_INVALID_ARGUMENT && h == nullptr;
        if (!refused || !contains(medscore_last_error(), needle)) {
            medscore_test::fail(__FILE__, __LINE__, std::string("option not refused: ") + needle + " / " + medscore_last_error());
        }
        medscore_memory_free(h);
    };
    bad_option([](medscore_memory_options& b) { b.min_cluster_size = 1; }, "min_cluster_size");
    bad_option([](medscore_memory_options& b) { b.min_samples = 0; }, "min_samples");
    bad_option([](medscore_memory_options& b) { b.selection = 7; }, "selection");
    bad_option([](medscore_memory_options& b) { b.assign = -1; }, "assign");
    bad_option([](medscore_memory_options& b) { b.keyed = 2; }, "keyed");
    bad_option([](medscore_memory_options& b) { b.alpha = std::nan(""); }, "alpha");
    bad_option([](medscore_memory_options& b) { b.beta = -1.0; }, "beta");
    bad_option([](medscore_memory_options& b) { b.capacity = 0; }, "capacity");
    bad_option([](medscore_memory_options& b) { b.n_threads = -3; }, "n_threads");
    medscore_memory_free(nullptr);  // a no-op
}

void test_penalize_and_info() {
    medscore_memory_t* m = new_memory();
    Batch b = batch(0);
    std::vector<int64_t> labels(kN), sizes(kN);
    CHECK(medscore_memory_penalize(m, b.x.data(), kN, kDim, b.keys.data(), b.correct.data(), nullptr, 0,
                                   b.penalties.data(), labels.data(), sizes.data()) == MEDSCORE_OK);
    CHECK(b.penalties[5] == 0.0 && labels[5] == -1 && sizes[5] == 0);  // correct: not stored
    for (int i = 0; i < kN; ++i) CHECK(b.penalties[i] >= 0.0 && b.penalties[i] <= 0.2);
    Batch c = batch(1);
    CHECK(medscore_memory_insert(m, c.x.data(), kN, kDim, c.keys.data(), c.correct.data(), nullptr, -1) == MEDSCORE_OK);
    const medscore_memory_info info = info_of(m);
    CHECK(info.keys == 2 && info.groups == 2 && info.points == 10 && info.last_step == 1 && info.dim == kDim);
    CHECK(std::string(medscore_memory_last_error(m)).empty());
    medscore_memory_free(m);
}

void test_bad_input_is_an_error_never_a_crash() {
    medscore_memory_t* m = new_memory();
    Batch b = batch(0);
    CHECK(penalize(m, b, 4) == MEDSCORE_OK);
    const medscore_memory_info before = info_of(m);
    const auto refused = [&](medscore_status s, const char* needle, int line) {
        if (s != MEDSCORE_ERROR_INVALID_ARGUMENT || !contains(medscore_memory_last_error(m), needle) ||
            !contains(medscore_last_error(), needle)) {
            medscore_test::fail(__FILE__, line, std::string("not refused: ") + needle + " / " + medscore_memory_last_error(m));
        }
    };
    double* out = b.penalties.data();
    const double* x = b.x.data();
    const int64_t* keys = b.keys.data();
    const uint8_t* ok = b.correct.data();
    refused(medscore_memory_penalize(m, nullptr, kN, kDim, keys, ok, nullptr, 5, out, nullptr, nullptr), "fingerprints is NULL", __LINE__);
    refused(medscore_memory_penalize(m, x, kN, kDim, nullptr, ok, nullptr, 5, out, nullptr, nullptr), "keys is NULL", __LINE__);
    refused(medscore_memory_penalize(m, x, kN, kDim, keys, nullptr, nullptr, 5, out, nullptr, nullptr), "correct is NULL", __LINE__);
    refused(medscore_memory_penalize(m, x, kN, kDim, keys, ok, nullptr, 5, nullptr, nullptr, nullptr), "penalties is NULL", __LINE__);
    refused(medscore_memory_penalize(m, x, 0, kDim, keys, ok, nullptr, 5, out, nullptr, nullptr), "n >= 1", __LINE__);
    refused(medscore_memory_penalize(m, x, kN, -1, keys, ok, nullptr, 5, out, nullptr, nullptr), "dim >= 1", __LINE__);
    refused(medscore_memory_penalize(m, x, INT64_MAX / 2, 3, keys, ok, nullptr, 5, out, nullptr, nullptr), "overflows", __LINE__);
    refused(medscore_memory_penalize(m, x, kN / 2, kDim * 2, keys, ok, nullptr, 5, out, nullptr, nullptr), "dimensions", __LINE__);
    refused(penalize(m, b, 3), "before the memory's last step", __LINE__);
    refused(penalize(m, b, -7), "step must be in [0, 2^63 - 2]", __LINE__);
    refused(penalize(m, b, INT64_MAX), "step must be in [0, 2^63 - 2]", __LINE__);
    Batch far = batch(1);
    far.x[kDim] = 1e300;  // row 1: its norm overflows (the row would become all zeros)
    refused(penalize(m, far, 5), "row 1 has a Euclidean norm that overflows", __LINE__);
    Batch nan = batch(1);
    nan.x[4] = std::numeric_limits<double>::quiet_NaN();
    refused(penalize(m, nan, 5), "NaN or Inf in row 1", __LINE__);
    Batch inf = batch(1);
    inf.x[0] = -std::numeric_limits<double>::infinity();
    refused(penalize(m, inf, 5), "row 0", __LINE__);
    Batch two = batch(1);
    two.correct[2] = 2;
    refused(penalize(m, two, 5), "0 or 1", __LINE__);
    const medscore_memory_info after = info_of(m);
    CHECK(after.points == before.points && after.last_step == before.last_step && after.keys == before.keys);

    // A row marked invalid may hold NaN: no penalty, not stored.
    const std::vector<uint8_t> valid{1, 0, 1, 1, 1, 1};
    CHECK(medscore_memory_penalize(m, nan.x.data(), kN, kDim, nan.keys.data(), nan.correct.data(), valid.data(), 5,
                                   nan.penalties.data(), nullptr, nullptr) == MEDSCORE_OK);
    CHECK(nan.penalties[1] == 0.0 && info_of(m).points == before.points + 4);
    medscore_memory_free(m);
}

void test_the_last_step() {
    // Step 2^63 - 2 is the largest; "the last step + 1" after it is refused, never overflowed
    // (issue 20, item 4; UBSan checks the additions).
    medscore_memory_t* m = new_memory();
    Batch b = batch(0);
    CHECK(penalize(m, b, INT64_MAX - 1) == MEDSCORE_OK);
    CHECK(penalize(m, b, -1) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(contains(medscore_memory_last_error(m), "no step can follow it"));
    CHECK(penalize(m, b, INT64_MAX - 1) == MEDSCORE_OK);  // the same step again is fine
    CHECK(info_of(m).last_step == INT64_MAX - 1);
    medscore_memory_free(m);
}

void test_null_handle() {
    Batch b = batch(0);
    CHECK(penalize(nullptr, b, 0) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(contains(medscore_last_error(), "handle is NULL"));
    medscore_memory_info info;
    CHECK(medscore_memory_get_info(nullptr, &info) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_memory_save(nullptr, "/tmp/x") == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(contains(medscore_memory_last_error(nullptr), "NULL"));
    medscore_memory_t* m = new_memory();
    CHECK(medscore_memory_get_info(m, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    medscore_memory_free(m);
}

void test_save_load() {
    char dir_template[] = "/tmp/medscore_c_api_XXXXXX";
    const std::string dir = mkdtemp(dir_template), path = dir + "/m.ckpt", junk = dir + "/junk";
    medscore_memory_t* m = new_memory();
    Batch b = batch(0), c = batch(1), d = batch(1);
    CHECK(penalize(m, b, 0) == MEDSCORE_OK);
    CHECK(medscore_memory_save(m, path.c_str()) == MEDSCORE_OK);
    medscore_memory_t* loaded = nullptr;
    CHECK(medscore_memory_load(path.c_str(), 1, &loaded) == MEDSCORE_OK && loaded != nullptr);
    CHECK(penalize(m, c, 1) == MEDSCORE_OK && penalize(loaded, d, 1) == MEDSCORE_OK);
    CHECK(c.penalties == d.penalties);

    CHECK(medscore_memory_save(m, (dir + "/no/such/dir/m.ckpt").c_str()) == MEDSCORE_ERROR_IO);
    CHECK(contains(medscore_memory_last_error(m), "cannot create"));
    CHECK(medscore_memory_save(m, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    medscore_memory_t* none = loaded;
    CHECK(medscore_memory_load((dir + "/missing").c_str(), 1, &none) == MEDSCORE_ERROR_IO && none == nullptr);
    std::FILE* f = std::fopen(junk.c_str(), "wb");
    std::fputs("MEDSCORE-MEMORY\nnot really a checkpoint, just junk of some length", f);
    std::fclose(f);
    CHECK(medscore_memory_load(junk.c_str(), 1, &none) == MEDSCORE_ERROR_CORRUPT_FILE);
    CHECK(contains(medscore_last_error(), "junk: checkpoint version"));
    CHECK(medscore_memory_load(nullptr, 1, &none) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_memory_load(path.c_str(), -2, &none) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_memory_load(path.c_str(), 1, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    medscore_memory_free(loaded);
    medscore_memory_free(m);
    std::remove(path.c_str());
    std::remove(junk.c_str());
    std::remove(dir.c_str());
}

void test_concurrent_calls_on_one_handle_are_serialised() {
    medscore_memory_t* m = new_memory();
    std::vector<std::thread> threads;
    std::vector<int> failures(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int s = 0; s < 5; ++s) {
                Batch b = batch(t * 5 + s);
                failures[t] += penalize(m, b, -1) != MEDSCORE_OK;  // -1: the next step, whoever comes
                medscore_memory_info info;
                failures[t] += medscore_memory_get_info(m, &info) != MEDSCORE_OK;
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int f : failures) CHECK(f == 0);
    const medscore_memory_info info = info_of(m);
    CHECK(info.points == 4 * 5 * 5 && info.last_step == 19);
    medscore_memory_free(m);
}

void test_hdbscan() {
    medscore_hdbscan_params p;
    CHECK(medscore_hdbscan_params_init(&p) == MEDSCORE_OK && p.min_cluster_size == 5 && p.min_samples == 5);
    p.min_cluster_size = 3;
    p.min_samples = 2;
    p.n_threads = 1;
    std::vector<double> x;
    for (int i = 0; i < 12; ++i) x.insert(x.end(), {(i < 6 ? 0.0 : 50.0) + 0.1 * (i % 6), 0.05 * ((i * 7) % 5)});
    std::vector<int64_t> labels(12, -7);
    std::vector<double> prob(12, -1.0);
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, labels.data(), prob.data()) == MEDSCORE_OK);
    for (int i = 0; i < 12; ++i) {
        CHECK(labels[i] == labels[i < 6 ? 0 : 6] && labels[i] >= 0 && prob[i] >= 0.0 && prob[i] <= 1.0);
    }
    CHECK(labels[0] != labels[6]);
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, labels.data(), nullptr) == MEDSCORE_OK);
    CHECK(medscore_hdbscan(nullptr, x.data(), 12, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_hdbscan(&p, nullptr, 12, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, nullptr, nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(medscore_hdbscan(&p, x.data(), 0, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    x[3] = std::numeric_limits<double>::quiet_NaN();
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    CHECK(contains(medscore_last_error(), "row 1 is not finite"));
    x[3] = 0.0;
    p.min_cluster_size = 1;
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
    p.min_cluster_size = 3;
    p.selection = 9;
    CHECK(medscore_hdbscan(&p, x.data(), 12, 2, labels.data(), nullptr) == MEDSCORE_ERROR_INVALID_ARGUMENT);
}

void test_strings() {
    CHECK(std::string(medscore_version()) == "0.1.0");
    CHECK(std::string(medscore_status_string(MEDSCORE_ERROR_CORRUPT_FILE)).find("checkpoint") != std::string::npos);
    CHECK(std::string(medscore_status_string(static_cast<medscore_status>(42))) == "unknown status");
}

}  // namespace

int main() {
    test_options_and_create();
    test_penalize_and_info();
    test_bad_input_is_an_error_never_a_crash();
    test_the_last_step();
    test_null_handle();
    test_save_load();
    test_concurrent_calls_on_one_handle_are_serialised();
    test_hdbscan();
    test_strings();
    return medscore_test::report("test_c_api");
}
