// ctest for WorkerPool (thread_pool.hpp): every index of every loop runs exactly once, with
// and without prepare(), in pools created and destroyed in quick succession (a worker that
// starts late must still take the first loop), and an exception reaches the caller.
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medscore/thread_pool.hpp"

using namespace medscore;
using namespace medscore_test;

namespace {

void run_loops(WorkerPool& pool, int loops, int64_t n, int64_t chunk, bool prepare) {
    for (int loop = 0; loop < loops; ++loop) {
        if (prepare && loop % 2 == 0) pool.prepare();
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, chunk, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        bool once = true;
        for (auto& h : hits) once &= h.load() == 1;
        CHECK(once);
    }
}

void test_every_index_once() {
    for (int threads : {2, 3, 4}) {
        WorkerPool pool(threads);
        run_loops(pool, 300, 1000, 7, false);
        run_loops(pool, 300, 64, 1, true);
        run_loops(pool, 50, 3, 1, true);  // fewer chunks than threads
    }
}

void test_fresh_pools_take_their_first_loop() {
    for (int i = 0; i < 300; ++i) {
        WorkerPool pool(2 + i % 3);
        if (i % 2) pool.prepare();
        run_loops(pool, 1, 50, 1, false);
    }
}

void test_exceptions_reach_the_caller() {
    WorkerPool pool(2);
    bool thrown = false;
    try {
        pool.parallel_for(100, 1, [&](int64_t begin, int64_t) {
            if (begin == 57) throw std::runtime_error("item 57");
        });
    } catch (const std::runtime_error&) {
        thrown = true;
    }
    CHECK(thrown);
    run_loops(pool, 10, 100, 3, true);  // still usable
}

}  // namespace

int main() {
    test_every_index_once();
    test_fresh_pools_take_their_first_loop();
    test_exceptions_reach_the_caller();
    return report("test_thread_pool");
}
