// The C API (medscore/medscore.h) over medscore::Memory and medscore::hdbscan. Every entry point
// catches everything: exceptions become a status code plus a message, never an unwinding.
#include "medscore/medscore.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/checkpoint.hpp"
#include "medscore/error_memory.hpp"
#include "medscore/hdbscan.hpp"
#include "medscore/incremental_hdbscan.hpp"

struct medscore_memory {
    static constexpr const char* kName = "memory";
    explicit medscore_memory(medscore::Memory m) : object(std::move(m)) {}
    std::mutex mutex;           // serialises every call on the handle
    medscore::Memory object;
    std::string last_error;     // guarded by mutex
};

struct medscore_incremental {
    static constexpr const char* kName = "incremental";
    explicit medscore_incremental(const medscore::IncrementalParams& p) : object(p) {}
    std::mutex mutex;
    medscore::IncrementalHDBSCAN object;
    std::string last_error;
};

namespace {

thread_local std::string thread_last_error;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

/// Maps the exception in flight to a status and stores its message for this thread.
medscore_status status_of_current_exception() noexcept {
    medscore_status status = MEDSCORE_ERROR_INTERNAL;
    const char* message = "unknown error";
    try {
        throw;
    } catch (const std::bad_alloc&) {
        status = MEDSCORE_ERROR_OUT_OF_MEMORY;
        message = "out of memory";
    } catch (const medscore::CheckpointError& e) {
        status = MEDSCORE_ERROR_CORRUPT_FILE;
        message = e.what();
    } catch (const medscore::FileError& e) {
        status = MEDSCORE_ERROR_IO;
        message = e.what();
    } catch (const std::invalid_argument& e) {
        status = MEDSCORE_ERROR_INVALID_ARGUMENT;
        message = e.what();
    } catch (const std::exception& e) {  // std::logic_error and anything unexpected
        message = e.what();
    } catch (...) {
    }
    try {
        thread_last_error = message;
    } catch (...) {  // no memory even for the message: keep the status
    }
    return status;
}

/// Runs `body`, turning any exception into a status (thread-local message only).
template <class Body>
medscore_status guarded(Body&& body) noexcept {
    try {
        body();
        return MEDSCORE_OK;
    } catch (...) {
        return status_of_current_exception();
    }
}

/// Runs `body(object)` under the handle's mutex; failures also set the handle's message.
template <class Handle, class Body>
medscore_status guarded(Handle* handle, Body&& body) noexcept {
    if (handle == nullptr) return guarded([] { bad(std::string(Handle::kName) + " handle is NULL"); });
    try {
        std::lock_guard<std::mutex> lock(handle->mutex);
        const medscore_status status = guarded([&] { body(handle->object); });
        if (status != MEDSCORE_OK) {
            try {
                handle->last_error = thread_last_error;
            } catch (...) {
            }
        }
        return status;
    } catch (...) {  // the mutex could not be taken
        return status_of_current_exception();
    }
}

void require(const void* pointer, const char* name) {
    if (pointer == nullptr) bad(std::string(name) + " is NULL");
}

void check_shape(int64_t n, int64_t dim, const char* what) {
    if (n < 1 || dim < 1) bad(std::string(what) + ": need n >= 1 and dim >= 1, got n=" + std::to_string(n) +
                              ", dim=" + std::to_string(dim));
    if (n > INT64_MAX / dim) bad(std::string(what) + ": n * dim overflows");
}

bool flag(int32_t value, const char* name) {
    if (value != 0 && value != 1) bad(std::string(name) + " must be 0 or 1, got " + std::to_string(value));
    return value == 1;
}

medscore::SelectionMethod selection_of(int32_t value) {
    if (value == MEDSCORE_SELECTION_EOM) return medscore::SelectionMethod::eom;
    if (value == MEDSCORE_SELECTION_LEAF) return medscore::SelectionMethod::leaf;
    bad("selection must be MEDSCORE_SELECTION_EOM or MEDSCORE_SELECTION_LEAF, got " + std::to_string(value));
}

medscore::MemoryOptions options_from_c(const medscore_memory_options& c) {
    medscore::MemoryOptions o;
    o.keyed = flag(c.keyed, "keyed");
    o.store = flag(c.store_all, "store_all") ? medscore::StoreRule::all : medscore::StoreRule::wrong;
    o.normalize = flag(c.normalize, "normalize");
    o.min_cluster_size = c.min_cluster_size;
    o.min_samples = c.min_samples;
    o.method = selection_of(c.selection);
    if (c.assign != MEDSCORE_ASSIGN_EXACT && c.assign != MEDSCORE_ASSIGN_PAPER) bad("assign must be EXACT or PAPER");
    o.assign = c.assign == MEDSCORE_ASSIGN_PAPER ? medscore::AssignRule::paper : medscore::AssignRule::exact;
    o.penalize_noise = flag(c.penalize_noise, "penalize_noise");
    o.alpha = c.alpha;
    o.beta = c.beta;
    o.max_age = c.max_age;
    o.capacity = c.capacity;
    o.nan_rows = flag(c.nan_rows_skip, "nan_rows_skip") ? medscore::NanRows::skip : medscore::NanRows::error;
    o.n_threads = c.n_threads;
    if (c.target < MEDSCORE_TARGET_WRONG || c.target > MEDSCORE_TARGET_NONE) {
        bad("target must be one of MEDSCORE_TARGET_WRONG, RIGHT, BOTH or NONE, got " + std::to_string(c.target));
    }
    o.target = static_cast<medscore::PenaltyTarget>(c.target);
    medscore::check_options(o);
    return o;
}

medscore_memory_options options_to_c(const medscore::MemoryOptions& o) {
    medscore_memory_options c;
    c.keyed = o.keyed;
    c.store_all = o.store == medscore::StoreRule::all;
    c.normalize = o.normalize;
    c.min_cluster_size = o.min_cluster_size;
    c.min_samples = o.min_samples;
    c.selection = o.method == medscore::SelectionMethod::leaf ? MEDSCORE_SELECTION_LEAF : MEDSCORE_SELECTION_EOM;
    c.assign = o.assign == medscore::AssignRule::paper ? MEDSCORE_ASSIGN_PAPER : MEDSCORE_ASSIGN_EXACT;
    c.penalize_noise = o.penalize_noise;
    c.alpha = o.alpha;
    c.beta = o.beta;
    c.max_age = o.max_age;
    c.capacity = o.capacity;
    c.nan_rows_skip = o.nan_rows == medscore::NanRows::skip;
    c.n_threads = o.n_threads;
    c.target = static_cast<int32_t>(o.target);
    return c;
}

medscore::Penalties run_step(medscore::Memory& memory, const double* fingerprints, int64_t n, int64_t dim,
                             const int64_t* keys, const uint8_t* correct, const uint8_t* valid, int64_t step) {
    check_shape(n, dim, "penalize");
    require(fingerprints, "fingerprints");
    require(keys, "keys");
    require(correct, "correct");
    return memory.penalize(medscore::PointsView{fingerprints, n, dim}, keys, correct, valid, step);
}

}  // namespace

extern "C" {

#define MEDSCORE_STR2(x) #x
#define MEDSCORE_STR(x) MEDSCORE_STR2(x)
const char* medscore_version(void) {
    return MEDSCORE_STR(MEDSCORE_VERSION_MAJOR) "." MEDSCORE_STR(MEDSCORE_VERSION_MINOR) "." MEDSCORE_STR(MEDSCORE_VERSION_PATCH);
}

const char* medscore_status_string(medscore_status status) {
    switch (status) {
        case MEDSCORE_OK: return "ok";
        case MEDSCORE_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case MEDSCORE_ERROR_IO: return "i/o error";
        case MEDSCORE_ERROR_CORRUPT_FILE: return "corrupt or unsupported checkpoint";
        case MEDSCORE_ERROR_OUT_OF_MEMORY: return "out of memory";
        case MEDSCORE_ERROR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char* medscore_last_error(void) { return thread_last_error.c_str(); }

medscore_status medscore_memory_options_init(medscore_memory_options* options, const char* preset) {
    return guarded([&] {
        require(options, "options");
        *options = options_to_c(medscore::MemoryOptions::preset(preset == nullptr ? "" : preset));
    });
}

medscore_status medscore_memory_create(const medscore_memory_options* options, medscore_memory_t** out) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(options, "options");
        *out = new medscore_memory(medscore::Memory(options_from_c(*options)));
    });
}

void medscore_memory_free(medscore_memory_t* memory) { delete memory; }

medscore_status medscore_memory_penalize(medscore_memory_t* memory, const double* fingerprints, int64_t n,
                                         int64_t dim, const int64_t* keys, const uint8_t* correct,
                                         const uint8_t* valid, int64_t step, double* penalties, int64_t* labels,
                                         int64_t* sizes) {
    return guarded(memory, [&](medscore::Memory& m) {
        require(penalties, "penalties");
        const medscore::Penalties result = run_step(m, fingerprints, n, dim, keys, correct, valid, step);
        std::memcpy(penalties, result.penalties.data(), sizeof(double) * static_cast<size_t>(n));
        if (labels != nullptr) std::memcpy(labels, result.labels.data(), sizeof(int64_t) * static_cast<size_t>(n));
        if (sizes != nullptr) std::memcpy(sizes, result.sizes.data(), sizeof(int64_t) * static_cast<size_t>(n));
    });
}

medscore_status medscore_memory_insert(medscore_memory_t* memory, const double* fingerprints, int64_t n, int64_t dim,
                                       const int64_t* keys, const uint8_t* correct, const uint8_t* valid,
                                       int64_t step) {
    return guarded(memory, [&](medscore::Memory& m) { run_step(m, fingerprints, n, dim, keys, correct, valid, step); });
}

medscore_status medscore_memory_set_penalty(medscore_memory_t* memory, medscore_penalty_fn fn, void* user_data) {
    return guarded(memory, [&](medscore::Memory& m) {
        if (fn == nullptr) {
            m.set_penalty(nullptr);
            return;
        }
        m.set_penalty([fn, user_data](const std::vector<int64_t>& sizes) {
            std::vector<double> out(sizes.size(), 0.0);
            if (fn(sizes.data(), static_cast<int64_t>(sizes.size()), out.data(), user_data) != 0) {
                bad("the penalty function returned an error");
            }
            return out;
        });
    });
}

medscore_status medscore_memory_get_info(medscore_memory_t* memory, medscore_memory_info* info) {
    return guarded(memory, [&](medscore::Memory& m) {
        require(info, "info");
        const medscore::KeyedMemory* engine = m.engine();
        info->keys = static_cast<int64_t>(m.keys().size());
        info->groups = engine ? engine->n_keys() : 0;
        info->points = engine ? engine->n_points() : 0;
        info->clusters = engine ? engine->n_clusters() : 0;
        info->noise = engine ? engine->n_noise() : 0;
        info->last_step = m.last_step();
        info->dim = m.dim();
    });
}

medscore_status medscore_memory_save(medscore_memory_t* memory, const char* path) {
    return guarded(memory, [&](medscore::Memory& m) {
        require(path, "path");
        medscore::save_memory(m, path);
    });
}

medscore_status medscore_memory_load(const char* path, int32_t n_threads, medscore_memory_t** out) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(path, "path");
        if (n_threads < -1) bad("n_threads must be >= 0, or -1 to keep the saved value");
        *out = new medscore_memory(medscore::load_memory(path, n_threads));
    });
}

const char* medscore_memory_last_error(const medscore_memory_t* memory) {
    if (memory == nullptr) return "memory handle is NULL";
    return memory->last_error.c_str();
}

medscore_status medscore_hdbscan_params_init(medscore_hdbscan_params* params) {
    return guarded([&] {
        require(params, "params");
        const medscore::HdbscanParams p;
        *params = medscore_hdbscan_params{p.min_cluster_size, p.min_samples, MEDSCORE_SELECTION_EOM,
                                          p.allow_single_cluster, p.epsilon, p.n_threads};
    });
}

medscore_status medscore_hdbscan(const medscore_hdbscan_params* params, const double* points, int64_t n, int64_t dim,
                                 int64_t* labels, double* probabilities) {
    return guarded([&] {
        require(params, "params");
        require(points, "points");
        require(labels, "labels");
        check_shape(n, dim, "hdbscan");
        for (int64_t i = 0; i < n * dim; ++i) {
            if (!std::isfinite(points[i])) bad("hdbscan: points row " + std::to_string(i / dim) + " is not finite");
        }
        if (params->n_threads < 0) bad("hdbscan: n_threads must be >= 0");
        medscore::HdbscanParams p;
        p.min_cluster_size = params->min_cluster_size;
        p.min_samples = params->min_samples;
        p.method = selection_of(params->selection);
        p.allow_single_cluster = flag(params->allow_single_cluster, "allow_single_cluster");
        p.epsilon = params->epsilon;
        p.n_threads = params->n_threads;
        const medscore::HdbscanResult result = medscore::hdbscan(medscore::PointsView{points, n, dim}, p);
        std::memcpy(labels, result.selection.labels.data(), sizeof(int64_t) * static_cast<size_t>(n));
        if (probabilities != nullptr) {
            std::memcpy(probabilities, result.selection.probabilities.data(), sizeof(double) * static_cast<size_t>(n));
        }
    });
}

medscore_status medscore_incremental_params_init(medscore_incremental_params* params) {
    return guarded([&] {
        require(params, "params");
        const medscore::IncrementalParams p;
        *params = medscore_incremental_params{p.min_cluster_size, p.min_samples, MEDSCORE_SELECTION_EOM,
                                              p.allow_single_cluster, p.capacity, p.n_threads,
                                              p.max_cluster_size, p.epsilon_max};
    });
}

medscore_status medscore_incremental_create(const medscore_incremental_params* params, medscore_incremental_t** out) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(params, "params");
        medscore::IncrementalParams p;
        p.min_cluster_size = params->min_cluster_size;
        p.min_samples = params->min_samples;
        p.method = selection_of(params->selection);
        p.allow_single_cluster = flag(params->allow_single_cluster, "allow_single_cluster");
        p.capacity = params->capacity;
        p.n_threads = params->n_threads;
        p.max_cluster_size = params->max_cluster_size;
        p.epsilon_max = params->epsilon_max;
        *out = new medscore_incremental(p);
    });
}

void medscore_incremental_free(medscore_incremental_t* engine) { delete engine; }

medscore_status medscore_incremental_insert(medscore_incremental_t* engine, const double* points, int64_t n,
                                            int64_t dim, int64_t* first_id) {
    return guarded(engine, [&](medscore::IncrementalHDBSCAN& e) {
        require(points, "points");
        check_shape(n, dim, "incremental_insert");
        const int64_t first = e.insert(medscore::PointsView{points, n, dim});
        if (first_id != nullptr) *first_id = first;
    });
}

medscore_status medscore_incremental_remove(medscore_incremental_t* engine, const int64_t* ids, int64_t n) {
    return guarded(engine, [&](medscore::IncrementalHDBSCAN& e) {
        if (n < 0) bad("incremental_remove: n must be >= 0");
        if (n > 0) require(ids, "ids");
        e.remove(std::vector<int64_t>(ids, ids + n));
    });
}

medscore_status medscore_incremental_size(medscore_incremental_t* engine, int64_t* size) {
    return guarded(engine, [&](medscore::IncrementalHDBSCAN& e) {
        require(size, "size");
        *size = e.size();
    });
}

medscore_status medscore_incremental_get(medscore_incremental_t* engine, int64_t capacity, int64_t* ids,
                                         int64_t* labels, double* probabilities) {
    return guarded(engine, [&](medscore::IncrementalHDBSCAN& e) {
        if (capacity < e.size()) {
            bad("incremental_get: the arrays hold " + std::to_string(capacity) + " entries, " +
                std::to_string(e.size()) + " points are live");
        }
        const auto n = static_cast<size_t>(e.size());
        if (ids != nullptr) std::memcpy(ids, e.ids().data(), sizeof(int64_t) * n);
        if (labels != nullptr) std::memcpy(labels, e.labels().data(), sizeof(int64_t) * n);
        if (probabilities != nullptr) std::memcpy(probabilities, e.probabilities().data(), sizeof(double) * n);
    });
}

const char* medscore_incremental_last_error(const medscore_incremental_t* engine) {
    if (engine == nullptr) return "incremental handle is NULL";
    return engine->last_error.c_str();
}

}  // extern "C"
