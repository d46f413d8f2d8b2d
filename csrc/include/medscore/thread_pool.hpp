// Minimal fork-join parallel loop over an index range (private to csrc/).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace medscore {

/// Threads to use for a request of `n_threads` (0 = every hardware thread), at least 1.
inline int resolve_threads(int n_threads) {
    if (n_threads > 0) return n_threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

/// Calls body(begin, end) on chunks of [0, n) from `n_threads` threads. Chunks are handed
/// out dynamically because per-item costs (tree queries) vary a lot. The first exception
/// thrown by a worker is rethrown in the caller after every worker has stopped.
template <class Body>
void parallel_for(int64_t n, int n_threads, int64_t chunk, Body&& body) {
    if (n <= 0) return;
    chunk = std::max<int64_t>(1, chunk);
    const int64_t max_workers = (n + chunk - 1) / chunk;
    const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(n_threads), max_workers));
    if (workers <= 1) {
        body(int64_t{0}, n);
        return;
    }
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&]() {
        try {
            for (int64_t begin = next.fetch_add(chunk); begin < n; begin = next.fetch_add(chunk)) {
                body(begin, std::min(n, begin + chunk));
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            next.store(n);  // stop handing out work
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(static_cast<size_t>(workers - 1));
    for (int t = 1; t < workers; ++t) threads.emplace_back(work);
    work();
    for (auto& thread : threads) thread.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace medscore
