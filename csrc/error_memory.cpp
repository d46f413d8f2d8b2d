// medscore::Memory: the Python medscore.Memory step (parse, store, cluster, penalise) in C++.
#include "medscore/error_memory.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "medscore/unique.hpp"

namespace medscore {
namespace {

[[noreturn]] void bad_input(const std::string& what) { throw std::invalid_argument("Memory::penalize: " + what); }

std::vector<uint8_t> check_flags(const uint8_t* flags, int64_t n, const char* name) {
    if (flags == nullptr) bad_input(std::string(name) + " is null");
    std::vector<uint8_t> out(flags, flags + n);
    for (int64_t i = 0; i < n; ++i) {
        if (out[i] > 1) bad_input(std::string(name) + " must hold 0 or 1, row " + std::to_string(i) + " holds " +
                                  std::to_string(out[i]));
    }
    return out;
}

/// True when every entry of `row` [cols] is finite: x * 0 is 0 for a finite x and NaN for
/// NaN or +-Inf, and a NaN survives the sum; four sums keep the loop from waiting on one.
bool finite_row(const double* row, int64_t cols) noexcept {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
        s0 += row[j] * 0.0;
        s1 += row[j + 1] * 0.0;
        s2 += row[j + 2] * 0.0;
        s3 += row[j + 3] * 0.0;
    }
    for (; j < cols; ++j) s0 += row[j] * 0.0;
    return (s0 + s1) + (s2 + s3) == 0.0;
}

bool all_nan(const double* row, int64_t cols) noexcept {
    for (int64_t j = 0; j < cols; ++j) {
        if (!std::isnan(row[j])) return false;
    }
    return true;
}

/// Rows that carry a fingerprint; rows marked valid must be finite.
std::vector<uint8_t> valid_rows(const PointsView& x, const uint8_t* valid, NanRows nan_rows) {
    std::vector<uint8_t> out(static_cast<size_t>(x.rows), 1);
    if (valid != nullptr) out = check_flags(valid, x.rows, "valid");
    int64_t first_bad = -1, n_bad = 0;
    for (int64_t i = 0; i < x.rows; ++i) {
        if (finite_row(x.row(i), x.cols)) continue;
        if (valid == nullptr && nan_rows == NanRows::skip && all_nan(x.row(i), x.cols)) out[i] = 0;
        if (out[i]) {
            if (first_bad < 0) first_bad = i;
            ++n_bad;
        }
    }
    if (first_bad >= 0) {
        bad_input("fingerprints contain NaN or Inf in row " + std::to_string(first_bad) + " (" + std::to_string(n_bad) +
                  " bad rows); mark rows without a fingerprint with valid or nan_rows=skip");
    }
    return out;
}

}  // namespace

MemoryOptions MemoryOptions::preset(const std::string& name) {
    MemoryOptions o;
    if (name.empty()) return o;
    if (name != "paper") throw std::invalid_argument("MemoryOptions::preset: unknown preset '" + name + "' (known: '', 'paper')");
    o.store = StoreRule::all;
    o.assign = AssignRule::paper;
    o.penalize_noise = true;
    return o;
}

void check_options(const MemoryOptions& o) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("MemoryOptions: " + what); };
    if (o.min_cluster_size < 2) fail("min_cluster_size must be >= 2, got " + std::to_string(o.min_cluster_size));
    if (o.min_samples < 1) fail("min_samples must be >= 1, got " + std::to_string(o.min_samples));
    if (!std::isfinite(o.alpha) || o.alpha < 0.0) fail("alpha must be finite and >= 0");
    if (!std::isfinite(o.beta) || o.beta < 0.0) fail("beta must be finite and >= 0");
    if (o.max_age < -1) fail("max_age must be >= 0 or -1 (none), got " + std::to_string(o.max_age));
    if (o.capacity == 0 || o.capacity < -1) fail("capacity must be >= 1 or -1 (none), got " + std::to_string(o.capacity));
    if (o.n_threads < 0) fail("n_threads must be >= 0, got " + std::to_string(o.n_threads));
    if ((o.target == PenaltyTarget::right || o.target == PenaltyTarget::both) && o.store != StoreRule::all) {
        fail("target right or both penalises correct rollouts by their own clusters, which needs store all");
    }
}

double default_penalty(int64_t size, double alpha, double beta) {
    // std::log is the C library's log, as Python's math.log: the same bits as medscore.Memory.
    return std::min(alpha * std::log(static_cast<double>(size + 1)), beta);
}

Memory::Memory(const MemoryOptions& options, PenaltyFunction penalty) : options_(options), penalty_(std::move(penalty)) {
    check_options(options_);
}

KeyedMemory Memory::make_engine(int64_t dim) const {
    MemoryParams p;
    p.dim = dim;
    p.hdbscan.min_cluster_size = options_.min_cluster_size;
    p.hdbscan.min_samples = options_.min_samples;
    p.hdbscan.method = options_.method;
    p.assign = options_.assign;
    p.vote_k = 3;
    p.max_age = options_.max_age;
    p.capacity = options_.capacity;
    p.n_threads = options_.n_threads;
    p.normalize = options_.normalize;
    return KeyedMemory(p);
}

std::vector<int64_t> Memory::key_ids(const int64_t* keys, int64_t n, std::vector<int64_t>& new_keys) const {
    // New keys get ids in increasing key order, as medscore.Memory numbers them.
    const UniqueValues unique = unique_values(keys, n);
    std::vector<int64_t> unique_ids(unique.values.size());
    for (size_t u = 0; u < unique.values.size(); ++u) {
        const auto it = key_index_.find(unique.values[u]);
        if (it != key_index_.end()) {
            unique_ids[u] = it->second;
        } else {
            unique_ids[u] = static_cast<int64_t>(keys_.size() + new_keys.size());
            new_keys.push_back(unique.values[u]);
        }
    }
    std::vector<int64_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[i] = unique_ids[unique.inverse[i]];
    return ids;
}

std::vector<int64_t> Memory::groups_of(const std::vector<int64_t>& ids, const std::vector<uint8_t>& is_correct,
                                       const std::vector<uint8_t>& is_valid, int64_t& n_stored) const {
    std::vector<int64_t> groups(ids.size(), -1);
    n_stored = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (!is_valid[i] || (options_.store == StoreRule::wrong && is_correct[i])) continue;
        int64_t group = options_.keyed ? ids[i] : 0;
        if (options_.store == StoreRule::all) group = 2 * group + is_correct[i];
        groups[i] = group;
        ++n_stored;
    }
    return groups;
}

Penalties Memory::penalize(const PointsView& x, const int64_t* keys, const uint8_t* correct, const uint8_t* valid,
                           int64_t step) {
    check_points(x, "Memory::penalize");
    if (dim_ != 0 && x.cols != dim_) {
        bad_input("fingerprints have " + std::to_string(x.cols) + " dimensions, the memory holds " + std::to_string(dim_));
    }
    if (keys == nullptr) bad_input("keys is null");
    const int64_t n = x.rows;
    const std::vector<uint8_t> is_correct = check_flags(correct, n, "correct");
    const std::vector<uint8_t> is_valid = valid_rows(x, valid, options_.nan_rows);
    std::vector<int64_t> new_keys;
    const std::vector<int64_t> ids = key_ids(keys, n, new_keys);
    if (step < -1 || step > kMaxStep) {
        bad_input("step must be in [0, 2^63 - 2] (or -1: the last step + 1), got " + std::to_string(step));
    }
    if (step == -1) {
        if (last_step_ == kMaxStep) bad_input("step: the memory's last step is 2^63 - 2, the largest; no step can follow it");
        step = last_step_ + 1;
    }
    if (step < last_step_) bad_input("step " + std::to_string(step) + " is before the memory's last step " + std::to_string(last_step_));

    int64_t n_stored = 0;
    const std::vector<int64_t> groups = groups_of(ids, is_correct, is_valid, n_stored);
    Penalties out{std::vector<double>(n, 0.0), std::vector<int64_t>(n, -1), std::vector<int64_t>(n, 0)};
    if (n_stored > 0) {
        // The engine stores (and normalises) the rows with a group >= 0; it is unchanged if it throws.
        StepResult result;
        if (engine_) {
            result = engine_->penalize_step(x, groups.data(), step);
        } else {
            KeyedMemory fresh = make_engine(x.cols);
            result = fresh.penalize_step(x, groups.data(), step);
            engine_.emplace(std::move(fresh));
        }
        dim_ = x.cols;
        out.labels = std::move(result.labels);
        out.sizes = std::move(result.sizes);
    }
    for (int64_t key : new_keys) {
        key_index_.emplace(key, static_cast<int64_t>(keys_.size()));
        keys_.push_back(key);
    }
    last_step_ = step;
    if (options_.max_age >= 0 && options_.keyed && engine_) drop_expired_keys();
    // The step is stored: only a user penalty function can fail from here on.
    out.penalties = penalties_of(out, is_correct, is_valid);
    last_penalties_ = out.penalties;
    return out;
}

std::vector<double> Memory::penalties_of(const Penalties& answer, const std::vector<uint8_t>& is_correct,
                                         const std::vector<uint8_t>& is_valid) const {
    const auto n = static_cast<int64_t>(is_correct.size());
    std::vector<int64_t> targeted;
    for (int64_t i = 0; i < n; ++i) {
        const bool aimed = options_.target == PenaltyTarget::both ||
                           (options_.target == PenaltyTarget::wrong && !is_correct[i]) ||
                           (options_.target == PenaltyTarget::right && is_correct[i]);
        if (aimed && is_valid[i] && (options_.penalize_noise || answer.labels[i] >= 0)) targeted.push_back(i);
    }
    std::vector<double> penalties(static_cast<size_t>(n), 0.0);
    if (!penalty_) {
        for (const int64_t i : targeted) penalties[i] = default_penalty(answer.sizes[i], options_.alpha, options_.beta);
        return penalties;
    }
    if (targeted.empty()) return penalties;
    std::vector<int64_t> sizes(targeted.size());
    for (size_t t = 0; t < targeted.size(); ++t) sizes[t] = answer.sizes[targeted[t]];
    const std::vector<double> values = penalty_(sizes);
    bool good = values.size() == sizes.size();
    for (size_t t = 0; good && t < values.size(); ++t) good = std::isfinite(values[t]) && values[t] >= 0.0;
    if (!good) throw std::invalid_argument("penalty(sizes) must return one finite value >= 0 per size");
    for (size_t t = 0; t < targeted.size(); ++t) penalties[targeted[t]] = values[t];
    return penalties;
}

void Memory::drop_expired_keys() {
    // The rule of medscore.Memory._drop_expired_keys: once keys none of whose groups holds a
    // point outnumber max(live keys, kDeadKeysKept), they are dropped and the rest renumbered.
    const std::vector<int64_t> sizes = engine_->key_sizes();
    const int64_t per_key = options_.store == StoreRule::all ? 2 : 1;
    const auto n_keys = static_cast<int64_t>(keys_.size());
    std::vector<int64_t> kept_keys, kept_groups;
    for (int64_t k = 0; k < n_keys; ++k) {
        int64_t held = 0;
        for (int64_t c = 0; c < per_key; ++c) {
            const int64_t g = k * per_key + c;
            held += g < static_cast<int64_t>(sizes.size()) ? sizes[g] : 0;
        }
        if (held > 0) kept_keys.push_back(k);
    }
    const auto n_live = static_cast<int64_t>(kept_keys.size());
    if (n_keys - n_live <= std::max(n_live, kDeadKeysKept)) return;
    std::vector<int64_t> keys;
    for (const int64_t k : kept_keys) {
        keys.push_back(keys_[k]);
        for (int64_t c = 0; c < per_key; ++c) {
            if (k * per_key + c < static_cast<int64_t>(sizes.size())) kept_groups.push_back(k * per_key + c);
        }
    }
    std::unordered_map<int64_t, int64_t> index;
    for (size_t i = 0; i < keys.size(); ++i) index.emplace(keys[i], static_cast<int64_t>(i));
    engine_->compact(kept_groups);
    keys_.swap(keys);
    key_index_.swap(index);
}

MemorySnapshot Memory::snapshot() const {
    MemorySnapshot s;
    s.options = options_;
    s.keys = keys_;
    s.last_step = last_step_;
    s.dim = dim_;
    s.last_penalties = last_penalties_;
    s.has_engine = engine_.has_value();
    if (engine_) s.engine = engine_->state();
    return s;
}

Memory Memory::from_snapshot(const MemorySnapshot& s, PenaltyFunction penalty) {
    Memory memory(s.options, std::move(penalty));
    if (s.last_step < -1 || s.last_step > kMaxStep) throw std::invalid_argument("Memory: last_step must be in [-1, 2^63 - 2]");
    if (s.dim < 0 || (s.has_engine && s.dim == 0)) throw std::invalid_argument("Memory: bad dim " + std::to_string(s.dim));
    for (double p : s.last_penalties) {
        if (!std::isfinite(p) || p < 0.0) throw std::invalid_argument("Memory: last_penalties must be finite and >= 0");
    }
    for (int64_t i = 0; i < static_cast<int64_t>(s.keys.size()); ++i) {
        if (!memory.key_index_.emplace(s.keys[i], i).second) throw std::invalid_argument("Memory: keys are not unique");
    }
    if (s.has_engine) {
        KeyedMemory engine = memory.make_engine(s.dim);
        engine.load_state(s.engine);
        memory.engine_.emplace(std::move(engine));
    }
    memory.keys_ = s.keys;
    memory.last_step_ = s.last_step;
    memory.dim_ = s.dim;
    memory.last_penalties_ = s.last_penalties;
    return memory;
}

}  // namespace medscore
