// KeyedMemory: per-key exact HDBSCAN with the MEDS vote, FIFO staleness and plain-array state.
#include "medscore/memory.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"
#include "medscore/normalize.hpp"
#include "medscore/thread_local.hpp"
#include "medscore/thread_pool.hpp"
#include "memory_check.hpp"
#include "memory_cluster.hpp"
#include "memory_vote.hpp"

namespace medscore {
namespace {

using memory_detail::Clustering;
using memory_detail::cluster_from_mst;
using memory_detail::refit;
using memory_detail::stage_workspace;
using memory_detail::KeyAnswers;
using memory_detail::norm_of;
using memory_detail::vote_new_rows;
using memory_detail::vote_workspace;
using memory_detail::VoteWorkspace;
using memory_detail::check_batch;
using memory_detail::check_params;
using memory_detail::kMaxNorm;
using memory_detail::stores_two_keys;
using memory_detail::throw_first_unnormalisable_row;

/// What one key's step computed; applied to the key only once every key has succeeded.
struct KeyUpdate {
    int64_t evict = 0;  ///< oldest points to drop
    Clustering clustering;
};

/// The batch rows of one key, ascending: a view into penalize_step's grouping (no copy).
struct RowList {
    const int64_t* first = nullptr;
    int64_t count = 0;
    const int64_t* begin() const noexcept { return first; }
    const int64_t* end() const noexcept { return first + count; }
    size_t size() const noexcept { return static_cast<size_t>(count); }
    int64_t operator[](size_t j) const noexcept { return first[j]; }
};

PointsView slice(const KeyState& key, int64_t dim, int64_t begin, int64_t count) {
    return PointsView{key.points.data() + begin * dim, count, dim};
}


/// assign == exact: each new row's label and cluster size once the key is re-clustered. New
/// row j sits at position first_new + j of the kept rows (before 0: dropped by the capacity).
void report_exact(const Clustering& c, const RowList& rows, int64_t first_new, KeyAnswers out) {
    for (size_t j = 0; j < rows.size(); ++j) {
        const int64_t pos = first_new + static_cast<int64_t>(j);
        const int64_t label = pos >= 0 ? c.labels[pos] : -1;
        out.labels[j] = label;
        out.sizes[j] = pos < 0 ? 0 : (label < 0 ? c.noise : c.sizes[label]);
    }
}

/// A key refits rather than inserts when the insert would compute more than this many
/// distances per point of the refit (see process_key).
constexpr int64_t kRefitPairsPerPoint = 2000;
/// Inserts of at least this many rows into at least this many take the kd-tree path (about
/// twice as fast as the direct one at 4,096 into 50,000; slower below), up to
/// kKdInsertMaxGrowth times the prior rows (measured, 200 clusters of 14-d points: 50,000
/// into 50,000 / 100,000 / 200,000 took 17 / 10 / 38 s, the MST of the same 50,000 /
/// 100,000 / 200,000 points by halves 12 / 15 / 83 s, a Boruvka refit 170-370 us per
/// point): the new rows' own MST dominates and the bridge search grows slowly with the old
/// rows, so this insert beats a refit of old + new rows; beyond it a refit is used.
constexpr int64_t kKdInsertMinRows = 1024;
constexpr int64_t kKdInsertMinPrior = 16384;
constexpr int64_t kKdInsertMaxGrowth = 1;
/// Appends the key's rows (each divided by its numpy_norm with params.normalize), votes,
/// inserts and re-clusters. Leaves `key`'s old rows, labels and MST untouched (only appends
/// to points/steps/norms, which the caller truncates on failure).
KeyUpdate process_key(KeyState& key, const RowList& rows, const PointsView& batch, int64_t step,
                      const MemoryParams& params, int refit_threads, KeyAnswers out) {
    const int64_t dim = params.dim, n_old = key.size(), m = static_cast<int64_t>(rows.size());
    std::fill(out.labels, out.labels + m, int64_t{-1});  // the answer of a row nothing decides
    std::fill(out.sizes, out.sizes + m, int64_t{0});
    for (int64_t i = static_cast<int64_t>(key.norms.size()); i < n_old; ++i) {
        key.norms.push_back(norm_of(key.points.data() + i * dim, dim));
    }
    // One allocation per array and step at most (appending row by row would double it a few times).
    auto grow = [](auto& v, size_t size) {
        if (v.capacity() < size) v.reserve(std::max(size, 2 * v.capacity()));
    };
    grow(key.points, static_cast<size_t>((n_old + m) * dim));
    grow(key.steps, static_cast<size_t>(n_old + m));
    grow(key.norms, static_cast<size_t>(n_old + m));
    VoteWorkspace& w = vote_workspace();
    // Row by row but stage by stage (all norms, then all divisions, then the stored rows'
    // norms): each stage's rows are independent, so their latency chains overlap.
    key.points.resize(static_cast<size_t>((n_old + m) * dim));
    double* added = key.points.data() + n_old * dim;
    if (params.normalize) {
        w.squares.resize(static_cast<size_t>(dim));
        w.row_norms.resize(static_cast<size_t>(m));
        for (int64_t j = 0; j < m; ++j) w.row_norms[j] = numpy_norm(batch.row(rows[j]), dim, w.squares.data());
        for (int64_t j = 0; j < m; ++j) {
            // Zero (or underflowing to zero) or overflowing to infinity: no unit row. Named by the caller.
            if (!(w.row_norms[j] > 0.0 && w.row_norms[j] <= kMaxNorm)) throw std::invalid_argument("a stored row has no unit row");
        }
        for (int64_t j = 0; j < m; ++j) divide_row(batch.row(rows[j]), w.row_norms[j], dim, added + j * dim);
    } else {
        for (int64_t j = 0; j < m; ++j) std::copy(batch.row(rows[j]), batch.row(rows[j]) + dim, added + j * dim);
    }
    key.steps.insert(key.steps.end(), static_cast<size_t>(m), step);
    key.norms.resize(static_cast<size_t>(n_old + m));
    for (int64_t j = 0; j < m; ++j) key.norms[n_old + j] = norm_of(added + j * dim, dim);
    int64_t aged = 0;
    while (params.max_age >= 0 && aged < n_old && step - key.steps[aged] > params.max_age) ++aged;
    const int64_t n_prior = n_old - aged;
    Clustering refitted;
    if (aged > 0) refitted = refit(slice(key, dim, aged, n_prior), key.steps.data() + aged, params.hdbscan, refit_threads);
    const Clustering* prior_fit = aged > 0 ? &refitted : nullptr;
    const int64_t* prior_labels = prior_fit ? prior_fit->labels.data() : key.labels.data();
    const std::vector<int64_t>& prior_sizes = prior_fit ? prior_fit->sizes : key.cluster_sizes;
    const int64_t prior_noise = prior_fit ? prior_fit->noise : key.noise;
    const int64_t squared_stride =
        params.assign == AssignRule::paper
            ? vote_new_rows(slice(key, dim, aged, n_prior + m), n_prior, key.norms.data() + aged, prior_labels,
                            prior_sizes, prior_noise, params.vote_k, w, out)
            : 0;
    const int64_t over = params.capacity >= 0 ? std::max<int64_t>(0, n_prior + m - params.capacity) : 0;
    const int64_t start = aged + over, n_final = n_old + m - start;
    KeyUpdate update;
    update.evict = start;
    // Both paths give the same answer; the cheaper one runs. A direct insert costs about
    // 10 ns per (new, old) pair, a refit 70-370 us per point (measured, 14-d unit vectors,
    // 50k-200k points): insert directly while the pairs stay under kRefitPairsPerPoint per
    // point refitted; big chunks into big keys take the kd-tree insert (see kKdInsertMinRows).
    const bool kd_insert = m >= kKdInsertMinRows && n_prior >= kKdInsertMinPrior && m <= kKdInsertMaxGrowth * n_prior;
    const bool incremental = params.hdbscan.min_samples == 1 && over == 0 && n_prior >= 1 &&
                             (kd_insert || m * n_prior <= kRefitPairsPerPoint * (n_prior + m));
    if (incremental) {
        const std::vector<MstEdge>& prior_mst = prior_fit ? prior_fit->mst : key.mst;
        const PointsView final_points = slice(key, dim, aged, n_final);
        const double* squared = squared_stride > 0 ? w.squared.data() : nullptr;
        std::vector<LinkageRow>* linkage = kd_insert ? nullptr : &stage_workspace().linkage;
        std::vector<MstEdge> mst = kd_insert ? insert_into_mst_by_kdtree(prior_mst, final_points, n_prior, refit_threads)
                                             : insert_into_mst(prior_mst, final_points, n_prior, squared, squared_stride,
                                                               linkage);
        update.clustering =
            cluster_from_mst(std::move(mst), final_points, key.steps.data() + aged, params.hdbscan, linkage != nullptr);
    } else {
        update.clustering = refit(slice(key, dim, start, n_final), key.steps.data() + start, params.hdbscan, refit_threads);
    }
    if (params.assign == AssignRule::exact) report_exact(update.clustering, rows, n_prior - over, out);
    return update;
}

/// The indices t of `touched` by decreasing old_sizes[t] + new rows, ties by t: a counting
/// sort while sizes are small (every step of a keyed memory), else a comparison sort.
template <class NewRows>
std::vector<int64_t> largest_first(const std::vector<int64_t>& touched, const std::vector<int64_t>& old_sizes,
                                   NewRows&& new_rows) {
    const int64_t n = static_cast<int64_t>(touched.size());
    std::vector<int64_t> size(touched.size()), order(touched.size());
    int64_t largest = 0;
    for (int64_t t = 0; t < n; ++t) {
        size[t] = old_sizes[t] + new_rows(touched[t]);
        largest = std::max(largest, size[t]);
    }
    if (largest <= 4 * n + 1024) {
        std::vector<int64_t> start(static_cast<size_t>(largest + 2), 0);  // by rank largest - size
        for (int64_t t = 0; t < n; ++t) ++start[largest - size[t] + 1];
        for (int64_t r = 0; r <= largest; ++r) start[r + 1] += start[r];
        for (int64_t t = 0; t < n; ++t) order[start[largest - size[t]]++] = t;
        return order;
    }
    for (int64_t t = 0; t < n; ++t) order[t] = t;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return size[a] != size[b] ? size[a] > size[b] : a < b; });
    return order;
}

/// The aged points of one key that a step does not touch: drop the first `aged` points and
/// keep `clustering` (a refit of the rest; empty when every point aged).
struct Expiry {
    int64_t key = 0;
    int64_t aged = 0;
    Clustering clustering;
};

/// Expiries of the keys in arrivals[0, n_due) (their oldest step is past max_age at `step`)
/// that `touched` (ascending) does not hold: process_key ages those itself.
std::vector<Expiry> plan_expiries(const std::vector<KeyState>& keys, const std::deque<std::pair<int64_t, int64_t>>& arrivals,
                                  size_t n_due, const std::vector<int64_t>& touched, int64_t step, const MemoryParams& params,
                                  WorkerPool& pool) {
    std::vector<int64_t> due;
    for (size_t i = 0; i < n_due; ++i) {
        const int64_t k = arrivals[i].second;
        if (k >= static_cast<int64_t>(keys.size()) || std::binary_search(touched.begin(), touched.end(), k)) continue;
        const KeyState& key = keys[k];
        if (key.size() > 0 && step - key.steps[0] > params.max_age) due.push_back(k);
    }
    std::sort(due.begin(), due.end());
    due.erase(std::unique(due.begin(), due.end()), due.end());
    std::vector<Expiry> out(due.size());
    pool.parallel_for(static_cast<int64_t>(due.size()), 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const KeyState& key = keys[due[i]];
            int64_t aged = 0;
            while (aged < key.size() && step - key.steps[aged] > params.max_age) ++aged;
            out[i].key = due[i];
            out[i].aged = aged;
            if (aged < key.size()) {
                out[i].clustering = refit(slice(key, params.dim, aged, key.size() - aged), key.steps.data() + aged,
                                          params.hdbscan, 1);
            }
        }
    });
    return out;
}

/// The process's worker pool for `n_threads` threads (resolved), created on first use and
/// shared by every memory: a memory created later (after a load, or one per task) finds its
/// workers already running, with their workspaces grown. Pools are never destroyed (their
/// threads sleep when idle and end with the process), so a forked child, which gets pools
/// of its own, never destroys the parent's (whose thread objects it cannot join).
std::shared_ptr<WorkerPool> shared_pool(int n_threads) {
    static std::mutex mutex;
    static auto* pools = new std::vector<std::shared_ptr<WorkerPool>>();  // leaked on purpose: no exit-time join
    const int threads = resolve_threads(n_threads);
    const long pid = WorkerPool::current_pid();
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& pool : *pools) {
        if (pool->threads() == threads && pool->created_in() == pid) return pool;
    }
    pools->push_back(std::make_shared<WorkerPool>(threads));
    return pools->back();
}

}  // namespace

KeyedMemory::KeyedMemory(const MemoryParams& params) : params_(params) {
    check_params(params_);
    pool_ = shared_pool(params_.n_threads);
}

void KeyedMemory::penalize_step(const PointsView& points, const int64_t* keys, int64_t step, int64_t* labels,
                                int64_t* sizes) {
    if (keys == nullptr || labels == nullptr || sizes == nullptr) {
        throw std::invalid_argument("penalize_step: keys, labels and sizes must not be null");
    }
    if (pool_->created_in() != WorkerPool::current_pid()) pool_ = shared_pool(params_.n_threads);  // forked
    // The workers wake (a system call, then tens of microseconds) while the batch is checked
    // and grouped, if it stores rows of two keys or more (a single key, as in a global
    // memory, refits on threads of its own).
    if (stores_two_keys(keys, points.rows)) pool_->prepare();
    check_batch(points, keys, step, params_.dim, last_step_, params_.normalize);
    const int64_t max_key = *std::max_element(keys, keys + points.rows);
    // Stored rows grouped by key (a counting sort, ascending rows within a key): two flat
    // arrays instead of one vector per key. Rows with key -1 land in key_start[0]'s slot.
    std::vector<int64_t> key_start(static_cast<size_t>(max_key + 2), 0);
    for (int64_t i = 0; i < points.rows; ++i) ++key_start[keys[i] + 1];
    const int64_t n_skipped = key_start[0];
    key_start[0] = 0;
    std::vector<int64_t> grouped(static_cast<size_t>(points.rows - n_skipped));
    std::vector<int64_t> touched;
    for (int64_t k = 0; k <= max_key; ++k) {
        if (key_start[k + 1] > 0) touched.push_back(k);
        key_start[k + 1] += key_start[k];
    }
    {
        std::vector<int64_t> fill(key_start.begin(), key_start.end() - 1);
        for (int64_t i = 0; i < points.rows; ++i) {
            if (keys[i] >= 0) grouped[fill[keys[i]]++] = i;
        }
    }
    auto rows_of = [&](int64_t k) {
        return RowList{grouped.data() + key_start[k], key_start[k + 1] - key_start[k]};
    };

    // Answers in grouped order (each key's rows contiguous), scattered to batch order at the
    // end; process_key initialises its own entries.
    const std::unique_ptr<int64_t[]> grouped_answers(new int64_t[2 * grouped.size()]);
    int64_t* grouped_labels = grouped_answers.get();
    int64_t* grouped_sizes = grouped_labels + grouped.size();
    auto answers_of = [&](int64_t k) {
        return KeyAnswers{grouped_labels + key_start[k], grouped_sizes + key_start[k]};
    };
    const size_t old_key_count = keys_.size();
    std::vector<int64_t> old_sizes(touched.size());
    std::vector<KeyUpdate> updates(touched.size());
    // Arrivals whose step is past max_age: their keys expire now, touched or not.
    size_t n_due = 0;
    if (params_.max_age >= 0) {
        while (n_due < arrivals_.size() && step - arrivals_[n_due].first > params_.max_age) ++n_due;
    }
    std::vector<Expiry> expiries;
    for (size_t t = 0; t < touched.size(); ++t) old_sizes[t] = key_state(touched[t]).size();
    try {
        if (static_cast<int64_t>(keys_.size()) <= max_key) keys_.resize(static_cast<size_t>(max_key + 1));
        const int64_t n_jobs = static_cast<int64_t>(touched.size());
        // One key (a global memory) gets every thread for a refit; else threads go across keys.
        const int refit_threads = n_jobs == 1 ? params_.n_threads : 1;
        // Largest keys first: handed out dynamically, the small ones then fill the gaps.
        const std::vector<int64_t> order = largest_first(touched, old_sizes, [&](int64_t k) { return rows_of(k).count; });
        // Chunks of several keys (about 16 per thread) keep the shared counter quiet.
        const int64_t chunk = std::max<int64_t>(1, n_jobs / (16 * static_cast<int64_t>(pool_->threads())));
        pool_->parallel_for(n_jobs, chunk, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const int64_t t = order[i];
                updates[t] = process_key(keys_[touched[t]], rows_of(touched[t]), points, step, params_,
                                         refit_threads, answers_of(touched[t]));
            }
        });
        if (n_due > 0) expiries = plan_expiries(keys_, arrivals_, n_due, touched, step, params_, *pool_);
    } catch (...) {
        for (size_t t = 0; t < touched.size() && touched[t] < static_cast<int64_t>(keys_.size()); ++t) {
            KeyState& key = keys_[touched[t]];
            key.points.resize(static_cast<size_t>(old_sizes[t] * params_.dim));
            key.steps.resize(static_cast<size_t>(old_sizes[t]));
            key.norms.resize(std::min(key.norms.size(), static_cast<size_t>(old_sizes[t])));
        }
        if (keys_.size() > old_key_count) keys_.resize(old_key_count);
        if (params_.normalize) throw_first_unnormalisable_row(points, keys);
        throw;
    }
    for (size_t t = 0; t < touched.size(); ++t) {
        KeyState& key = keys_[touched[t]];
        KeyUpdate& update = updates[t];
        key.points.erase(key.points.begin(), key.points.begin() + update.evict * params_.dim);
        key.steps.erase(key.steps.begin(), key.steps.begin() + update.evict);
        key.norms.erase(key.norms.begin(), key.norms.begin() + update.evict);
        key.labels = std::move(update.clustering.labels);
        key.cluster_sizes = std::move(update.clustering.sizes);
        key.noise = update.clustering.noise;
        key.mst = std::move(update.clustering.mst);
    }
    for (Expiry& e : expiries) {
        KeyState& key = keys_[e.key];
        if (e.aged == key.size()) {
            key = KeyState{};  // releases the key's buffers
            continue;
        }
        key.points.erase(key.points.begin(), key.points.begin() + e.aged * params_.dim);
        key.steps.erase(key.steps.begin(), key.steps.begin() + e.aged);
        key.norms.erase(key.norms.begin(), key.norms.begin() + std::min<int64_t>(e.aged, static_cast<int64_t>(key.norms.size())));
        key.labels = std::move(e.clustering.labels);
        key.cluster_sizes = std::move(e.clustering.sizes);
        key.noise = e.clustering.noise;
        key.mst = std::move(e.clustering.mst);
    }
    if (params_.max_age >= 0) {
        arrivals_.erase(arrivals_.begin(), arrivals_.begin() + static_cast<std::ptrdiff_t>(n_due));
        for (const int64_t k : touched) {
            if (arrivals_.empty() || arrivals_.back() != std::make_pair(step, k)) arrivals_.emplace_back(step, k);
        }
    }
    if (n_skipped > 0) {
        std::fill(labels, labels + points.rows, int64_t{-1});
        std::fill(sizes, sizes + points.rows, int64_t{0});
    }
    for (int64_t g = 0; g < static_cast<int64_t>(grouped.size()); ++g) {
        labels[grouped[g]] = grouped_labels[g];
        sizes[grouped[g]] = grouped_sizes[g];
    }
    last_step_ = step;
}

StepResult KeyedMemory::penalize_step(const PointsView& points, const int64_t* keys, int64_t step) {
    StepResult result;
    result.labels.resize(static_cast<size_t>(std::max<int64_t>(points.rows, 0)));
    result.sizes.resize(result.labels.size());
    penalize_step(points, keys, step, result.labels.data(), result.sizes.data());
    return result;
}

int64_t KeyedMemory::n_keys() const noexcept {
    int64_t n = 0;
    for (const KeyState& k : keys_) n += k.size() > 0;
    return n;
}

int64_t KeyedMemory::n_points() const noexcept {
    int64_t n = 0;
    for (const KeyState& k : keys_) n += k.size();
    return n;
}

int64_t KeyedMemory::n_clusters() const noexcept {
    int64_t n = 0;
    for (const KeyState& k : keys_) n += static_cast<int64_t>(k.cluster_sizes.size());
    return n;
}

int64_t KeyedMemory::n_noise() const noexcept {
    int64_t n = 0;
    for (const KeyState& k : keys_) n += k.noise;
    return n;
}

std::vector<int64_t> KeyedMemory::key_sizes() const {
    std::vector<int64_t> sizes(keys_.size());
    for (size_t k = 0; k < keys_.size(); ++k) sizes[k] = keys_[k].size();
    return sizes;
}

void KeyedMemory::compact(const std::vector<int64_t>& kept) {
    const auto n = static_cast<int64_t>(keys_.size());
    std::vector<int64_t> new_id(static_cast<size_t>(n), -1);
    for (size_t i = 0; i < kept.size(); ++i) {
        if (kept[i] < 0 || kept[i] >= n || (i > 0 && kept[i] <= kept[i - 1])) {
            throw std::invalid_argument("KeyedMemory::compact: kept keys must be increasing ids below " + std::to_string(n));
        }
        new_id[kept[i]] = static_cast<int64_t>(i);
    }
    for (int64_t k = 0; k < n; ++k) {
        if (new_id[k] < 0 && keys_[k].size() > 0) {
            throw std::invalid_argument("KeyedMemory::compact: key " + std::to_string(k) + " holds points and is not kept");
        }
    }
    std::vector<KeyState> keys(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) keys[i] = std::move(keys_[kept[i]]);
    std::deque<std::pair<int64_t, int64_t>> arrivals;
    for (const auto& [s, k] : arrivals_) {
        if (k < n && new_id[k] >= 0) arrivals.emplace_back(s, new_id[k]);
    }
    keys_.swap(keys);
    arrivals_.swap(arrivals);
}

void KeyedMemory::rebuild_arrivals() {
    arrivals_.clear();
    if (params_.max_age < 0) return;
    std::vector<std::pair<int64_t, int64_t>> all;
    for (size_t k = 0; k < keys_.size(); ++k) {
        const std::vector<int64_t>& steps = keys_[k].steps;
        for (size_t i = 0; i < steps.size(); ++i) {
            if (i == 0 || steps[i] != steps[i - 1]) all.emplace_back(steps[i], static_cast<int64_t>(k));
        }
    }
    std::sort(all.begin(), all.end());
    arrivals_.assign(all.begin(), all.end());
}

const KeyState& KeyedMemory::key_state(int64_t key) const {
    static const KeyState empty;
    if (key < 0 || key >= static_cast<int64_t>(keys_.size())) return empty;
    return keys_[key];
}

Moments KeyedMemory::moments() const {
    const int64_t d = params_.dim;
    Moments m;
    m.sum.assign(static_cast<size_t>(d), 0.0);
    m.outer_sum.assign(static_cast<size_t>(d * d), 0.0);
    for (const KeyState& key : keys_) {
        for (int64_t i = 0; i < key.size(); ++i) {
            const double* x = key.points.data() + i * d;
            for (int64_t a = 0; a < d; ++a) {
                m.sum[a] += x[a];
                for (int64_t b = 0; b < d; ++b) m.outer_sum[a * d + b] += x[a] * x[b];
            }
        }
        m.count += key.size();
    }
    return m;
}

}  // namespace medscore
