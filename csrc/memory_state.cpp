// KeyedMemory state as plain arrays: export, and a checked, all-or-nothing import.
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "medscore/memory.hpp"
#include "memory_check.hpp"

namespace medscore {
namespace {

[[noreturn]] void bad_state(const std::string& what) {
    throw std::invalid_argument("KeyedMemory::load_state: " + what);
}

void check_state_sizes(const MemoryState& s, int64_t dim) {
    if (s.last_step < -1 || s.last_step > kMaxStep) bad_state("last_step must be in [-1, 2^63 - 2]");
    if (s.dim != dim) bad_state("dim is " + std::to_string(s.dim) + ", the memory was built for " + std::to_string(dim));
    if (s.offsets.empty() || s.offsets.front() != 0) bad_state("offsets must start with 0");
    for (size_t k = 1; k < s.offsets.size(); ++k) {
        if (s.offsets[k] < s.offsets[k - 1]) bad_state("offsets must be non-decreasing");
    }
    const int64_t total = s.offsets.back();
    if (static_cast<int64_t>(s.steps.size()) != total || static_cast<int64_t>(s.labels.size()) != total ||
        static_cast<int64_t>(s.points.size()) != total * dim) {
        bad_state("offsets say " + std::to_string(total) + " points but the arrays disagree");
    }
}

/// Builds one key from its slice of the state, checking labels, steps and the MST.
KeyState key_from_state(const MemoryState& s, const MemoryParams& params, size_t k, size_t& mst_pos) {
    const int64_t dim = params.dim;
    const int64_t begin = s.offsets[k], n = s.offsets[k + 1] - begin;
    KeyState key;
    key.points.assign(s.points.begin() + begin * dim, s.points.begin() + (begin + n) * dim);
    key.steps.assign(s.steps.begin() + begin, s.steps.begin() + begin + n);
    key.labels.assign(s.labels.begin() + begin, s.labels.begin() + begin + n);
    for (int64_t i = 0; i < n; ++i) {
        if (key.steps[i] < 0 || key.steps[i] > s.last_step || (i > 0 && key.steps[i] < key.steps[i - 1])) {
            bad_state("steps of key " + std::to_string(k) + " must be >= 0, non-decreasing and <= last_step");
        }
        if (key.labels[i] < -1 || key.labels[i] >= n) bad_state("label out of range in key " + std::to_string(k));
    }
    for (double x : key.points) if (!std::isfinite(x)) bad_state("a stored point is not finite");
    const int64_t n_edges = n > 0 ? n - 1 : 0;
    if (static_cast<int64_t>(s.mst.size() - mst_pos) < n_edges) bad_state("the MST array is too short");
    key.mst.assign(s.mst.begin() + mst_pos, s.mst.begin() + mst_pos + n_edges);
    mst_pos += static_cast<size_t>(n_edges);
    for (const MstEdge& e : key.mst) {
        if (!(0 <= e.u && e.u < e.v && e.v < n) || !(e.weight >= 0.0)) bad_state("bad MST edge in key " + std::to_string(k));
    }
    std::vector<int64_t> labels = key.labels;
    try {
        key.cluster_sizes = number_clusters(labels, PointsView{key.points.data(), n, dim}, key.steps.data(), key.noise);
    } catch (const std::logic_error&) {
        bad_state("labels of key " + std::to_string(k) + " skip a cluster number");
    }
    if (labels != key.labels) bad_state("labels of key " + std::to_string(k) + " are not numbered by earliest member");
    check_loaded_key(key, params, "KeyedMemory::load_state: key " + std::to_string(k) + ": ");
    return key;
}

}  // namespace

MemoryState KeyedMemory::state() const {
    MemoryState s;
    s.dim = params_.dim;
    s.last_step = last_step_;
    s.offsets.reserve(keys_.size() + 1);
    s.offsets.push_back(0);
    for (const KeyState& key : keys_) {
        s.points.insert(s.points.end(), key.points.begin(), key.points.end());
        s.steps.insert(s.steps.end(), key.steps.begin(), key.steps.end());
        s.labels.insert(s.labels.end(), key.labels.begin(), key.labels.end());
        s.mst.insert(s.mst.end(), key.mst.begin(), key.mst.end());
        s.offsets.push_back(s.offsets.back() + key.size());
    }
    return s;
}

void KeyedMemory::load_state(const MemoryState& s) {
    check_state_sizes(s, params_.dim);
    std::vector<KeyState> keys(s.offsets.size() - 1);
    size_t mst_pos = 0;
    for (size_t k = 0; k + 1 < s.offsets.size(); ++k) keys[k] = key_from_state(s, params_, k, mst_pos);
    if (mst_pos != s.mst.size()) bad_state("the MST array has extra edges");
    keys_.swap(keys);
    last_step_ = s.last_step;
    rebuild_arrivals();
}

}  // namespace medscore
