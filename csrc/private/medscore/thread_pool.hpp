// Minimal fork-join parallel loop over an index range (private to csrc/: under csrc/private, never installed).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace medscore {

/// Threads to use for a request of `n_threads` (0 = every hardware thread), at least 1.
inline int resolve_threads(int n_threads) {
    if (n_threads > 0) return n_threads;
    // Read once: glibc answers hardware_concurrency by reading /sys/devices/system/cpu/online.
    static const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

/// Chunks of [0, n) handed out dynamically to every thread that calls work() (per-item costs,
/// such as tree queries, vary a lot); the first exception a chunk throws stops the hand-out
/// and is kept for rethrow().
template <class Body>
class ChunkedLoop {
public:
    ChunkedLoop(int64_t n, int64_t chunk, Body& body) : n_(n), chunk_(chunk), body_(body) {}

    void work() noexcept {
        try {
            for (int64_t begin = next_.fetch_add(chunk_); begin < n_; begin = next_.fetch_add(chunk_)) {
                body_(begin, std::min(n_, begin + chunk_));
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
            next_.store(n_);  // stop handing out work
        }
    }

    /// After every thread's work() has returned.
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    const int64_t n_, chunk_;
    Body& body_;
    std::atomic<int64_t> next_{0};
    std::exception_ptr error_;
    std::mutex error_mutex_;
};

/// Calls body(begin, end) on chunks of [0, n) (ChunkedLoop) from `n_threads` threads started
/// for this call. The first exception thrown by a chunk is rethrown in the caller after every
/// thread has stopped.
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
    ChunkedLoop<std::remove_reference_t<Body>> loop(n, chunk, body);
    std::vector<std::thread> threads;
    threads.reserve(static_cast<size_t>(workers - 1));
    for (int t = 1; t < workers; ++t) threads.emplace_back([&loop] { loop.work(); });
    loop.work();
    for (auto& thread : threads) thread.join();
    loop.rethrow();
}

/// Worker threads kept between calls, for a caller that runs many short parallel loops
/// (the keyed memory: one loop per training step, a millisecond or a few). Keeping them saves
/// the thread start-up and, above all, keeps each worker's thread_local workspaces grown and
/// warm; new threads per call re-allocated them every step. A sleeping worker takes tens of
/// microseconds to wake, so a caller can announce a loop (prepare) before its serial set-up:
/// the workers then wait for it awake, for a bounded time. Calls from several threads are
/// serialised. A pool is not usable in a forked child (the parent's workers are not copied
/// into it, and its locks may be held): the child takes a pool of its own (created_in()).
class WorkerPool {
public:
    /// `n_threads` as in parallel_for (0 = every hardware thread); the caller is one of them.
    explicit WorkerPool(int n_threads) : n_threads_(resolve_threads(n_threads)) {}
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;
    ~WorkerPool() { stop(); }

    int threads() const noexcept { return n_threads_; }
    /// The process the pool was created in; in a forked child it must not be used (its
    /// mutexes and condition variables may hold the parent's threads' state).
    long created_in() const noexcept { return created_in_; }

    /// Wakes the workers for a parallel_for that follows soon; they spin for it at most
    /// kSpinMicroseconds before sleeping again.
    void prepare() {
        if (n_threads_ <= 1) return;
        std::lock_guard<std::mutex> call(call_mutex_);
        start_workers();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++prepared_;
        }
        wake_.notify_all();
    }

    /// parallel_for(n, threads(), chunk, body) on the kept workers: the same chunks, handed
    /// out dynamically, the first exception rethrown here after every worker has stopped.
    template <class Body>
    void parallel_for(int64_t n, int64_t chunk, Body&& body) {
        if (n <= 0) return;
        chunk = std::max<int64_t>(1, chunk);
        const int64_t max_workers = (n + chunk - 1) / chunk;
        if (n_threads_ <= 1 || max_workers <= 1) {
            body(int64_t{0}, n);
            return;
        }
        std::lock_guard<std::mutex> call(call_mutex_);
        start_workers();
        ChunkedLoop<std::remove_reference_t<Body>> loop(n, chunk, body);
        const int helpers = static_cast<int>(std::min<int64_t>(n_threads_, max_workers)) - 1;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = [&loop] { loop.work(); };
            job_helpers_ = helpers;
            pending_.store(helpers);
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        loop.work();
        // The helpers have at most a chunk left: wait awake a while, then asleep.
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
        while (pending_.load() != 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return pending_.load() == 0; });
        job_ = nullptr;
        lock.unlock();
        loop.rethrow();
    }

private:
    /// Longest wait, in microseconds, that a thread spends awake for its partner.
    static constexpr int kSpinMicroseconds = 2000;

    void start_workers() {
        if (!workers_.empty()) return;
        // What a worker has seen is fixed here, before any loop is posted: read by the new
        // thread itself, it could already include the first loop and miss it.
        const uint64_t generation = generation_.load();
        uint64_t prepared;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            prepared = prepared_;
        }
        for (int t = 1; t < n_threads_; ++t) {
            workers_.emplace_back([this, t, generation, prepared] { worker_loop(t, generation, prepared); });
        }
    }

    void worker_loop(int index, uint64_t seen, uint64_t seen_prepared) {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen || prepared_ != seen_prepared; });
                if (stopping_) return;
                if (generation_.load() == seen) {
                    // Announced: spin (unlocked) until the loop is posted or the wait runs out.
                    seen_prepared = prepared_;
                    lock.unlock();
                    const auto give_up =
                        std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
                    while (generation_.load() == seen && std::chrono::steady_clock::now() < give_up) {
                        std::this_thread::yield();
                    }
                    continue;
                }
                seen = generation_.load();
                if (index > job_helpers_) continue;  // this call needs fewer threads
                job = job_;
            }
            job();
            if (pending_.fetch_sub(1) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_one();
            }
        }
    }

    void stop() {
        if (current_pid() != created_in_) {
            // A forked child: these thread objects name the parent's threads; drop them unjoined.
            for (auto& t : workers_) t.detach();
            return;
        }
        if (workers_.empty()) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

public:
    static long current_pid() noexcept {
#if defined(__unix__) || defined(__APPLE__)
        return static_cast<long>(::getpid());
#else
        return 0;
#endif
    }

private:
    int n_threads_;
    long created_in_ = current_pid();
    std::vector<std::thread> workers_;
    std::mutex call_mutex_, mutex_;
    std::condition_variable wake_, done_;
    std::function<void()> job_;
    int job_helpers_ = 0;
    std::atomic<int> pending_{0};
    std::atomic<uint64_t> generation_{0};
    uint64_t prepared_ = 0;
    bool stopping_ = false;
};

}  // namespace medscore
