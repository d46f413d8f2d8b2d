// The error memory of MEDS in C++: fingerprints of a step in, one penalty per rollout out.
//
// medscore::Memory owns the rules of the memory: which rollouts are stored and in which
// clustering (groups 2 * key + correct with StoreRule::all), the step order, which rows are
// valid, which rollouts are penalised and by how much, and when expired keys are forgotten.
// The Python class medscore.Memory is a facade over it (it interns str/bytes keys to int64
// handles, converts tensors and checks types); the Numba backend mirrors it in
// medscore/_numba/error_memory.py. It wraps KeyedMemory (medscore/memory.hpp), which does the
// clustering, and its state is written by medscore/checkpoint.hpp.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <string>
#include <utility>
#include <vector>

#include "medscore/matrix.hpp"
#include "medscore/memory.hpp"
#include "medscore/normalize.hpp"  // numpy_norm
#include "medscore/select.hpp"

namespace medscore {

/// Which rollouts a Memory stores.
enum class StoreRule {
    wrong,  ///< only wrong rollouts, one clustering per key
    all,    ///< every rollout, one clustering per (key, correctness)
};

/// What a fingerprint row of NaN means when no `valid` mask is given.
enum class NanRows {
    error,  ///< an error (std::invalid_argument)
    skip,   ///< a rollout without fingerprint: no penalty, nothing stored
};

/// Which rollouts get a penalty (the MEDS reference's cluster_penalty_target).
enum class PenaltyTarget {
    wrong,  ///< wrong rollouts (the default, and the published runs)
    right,  ///< correct rollouts, by their own cluster (needs StoreRule::all)
    both,   ///< every rollout (needs StoreRule::all)
    none,   ///< no rollout: the memory only observes
};

/// Options of a Memory; the defaults are those of medscore.Memory (preset=None).
struct MemoryOptions {
    bool keyed = true;                  ///< one clustering per key; false: one global clustering
    StoreRule store = StoreRule::wrong;
    bool normalize = true;              ///< L2-normalise stored fingerprints (a zero row is an error)
    int64_t min_cluster_size = 2;       ///< >= 2
    int64_t min_samples = 1;            ///< >= 1; 1 updates keys incrementally
    SelectionMethod method = SelectionMethod::eom;
    AssignRule assign = AssignRule::exact;
    bool penalize_noise = false;        ///< penalise noise by the key's noise count
    double alpha = 0.1;                 ///< penalty min(alpha * ln(|C| + 1), beta); finite, >= 0
    double beta = 0.2;                  ///< finite, >= 0
    PenaltyTarget target = PenaltyTarget::wrong;
    int64_t max_age = -1;               ///< forget points older than this many steps; -1: never
    int64_t capacity = -1;              ///< at most this many points per key; -1: no limit
    NanRows nan_rows = NanRows::error;
    int n_threads = 0;                  ///< threads across keys; 0: every hardware thread

    /// The options of a preset: "" (the defaults) or "paper" (the published MEDS recipe:
    /// store all, paper vote, noise penalised). Throws std::invalid_argument otherwise.
    static MemoryOptions preset(const std::string& name);
};

/// Throws std::invalid_argument naming the first bad option.
void check_options(const MemoryOptions& options);

/// The default penalty of a cluster of `size` members: min(alpha * ln(size + 1), beta).
double default_penalty(int64_t size, double alpha, double beta);

/// Keys without points (all expired) that a Memory with max_age keeps before dropping them;
/// beyond max(live keys, kDeadKeysKept) they are dropped (medscore.Memory.DEAD_KEYS_KEPT).
constexpr int64_t kDeadKeysKept = 64;

/// A penalty other than the default: sizes [M] of the penalised rollouts' clusters (noise: the
/// key's noise count) in, one penalty per size out (finite, >= 0; Memory checks).
using PenaltyFunction = std::function<std::vector<double>(const std::vector<int64_t>& sizes)>;

/// Per-rollout answer of Memory::penalize; every vector has N entries.
struct Penalties {
    std::vector<double> penalties;  ///< >= 0, to subtract from the rewards
    std::vector<int64_t> labels;    ///< cluster within the rollout's key, -1 noise or not stored
    std::vector<int64_t> sizes;     ///< that cluster's size (noise: the key's noise count; 0 if not stored)
};

/// Everything a Memory checkpoint holds (medscore/checkpoint.hpp writes and reads it).
struct MemorySnapshot {
    MemoryOptions options;
    std::vector<int64_t> keys;            ///< user keys by dense id (order of first appearance)
    int64_t last_step = -1;
    int64_t dim = 0;                      ///< 0 until something is stored
    std::vector<double> last_penalties;   ///< penalties of the last penalize call
    bool has_engine = false;              ///< false until something is stored
    MemoryState engine;                   ///< the KeyedMemory's arrays (when has_engine)
};

/// Error memory: per-key exact HDBSCAN of stored fingerprints, cluster sizes to penalties.
/// Not thread-safe: callers serialise calls on one Memory (the C API does, with a mutex).
class Memory {
public:
    /// Checks `options` (std::invalid_argument).
    explicit Memory(const MemoryOptions& options = MemoryOptions(), PenaltyFunction penalty = nullptr);

    /// Penalties of one step's N rollouts; stores the step.
    /// `fingerprints` [N, D] float64 row-major; `keys` [N] any int64 (the prompt's stable id);
    /// `correct` [N] 0/1; `valid` [N] 0/1 or null (rows with 0 have no fingerprint);
    /// `step` >= last_step(), or -1 for last_step() + 1.
    /// Throws std::invalid_argument on bad input; the memory is then unchanged. With a
    /// PenaltyFunction, the step is stored before the function is called: if it throws (or
    /// returns a bad value, std::invalid_argument), the step stays stored and last_penalties()
    /// keeps the previous step's values.
    Penalties penalize(const PointsView& fingerprints, const int64_t* keys, const uint8_t* correct,
                       const uint8_t* valid, int64_t step);

    /// Replaces the penalty function (null: the default formula). It is not part of the state:
    /// a loaded memory gets it again from its owner.
    void set_penalty(PenaltyFunction penalty) { penalty_ = std::move(penalty); }

    const MemoryOptions& options() const noexcept { return options_; }
    int64_t dim() const noexcept { return dim_; }              ///< 0 until something is stored
    int64_t last_step() const noexcept { return last_step_; }  ///< -1 before the first step
    const std::vector<int64_t>& keys() const noexcept { return keys_; }
    const std::vector<double>& last_penalties() const noexcept { return last_penalties_; }
    /// The clustering engine; null until something is stored.
    const KeyedMemory* engine() const noexcept { return engine_ ? &*engine_ : nullptr; }

    MemorySnapshot snapshot() const;
    /// A Memory holding `snapshot` (checked; std::invalid_argument), with `snapshot.options`.
    static Memory from_snapshot(const MemorySnapshot& snapshot, PenaltyFunction penalty = nullptr);

private:
    /// The engine group of each row (-1: not stored) and how many rows are stored.
    std::vector<int64_t> groups_of(const std::vector<int64_t>& ids, const std::vector<uint8_t>& is_correct,
                                   const std::vector<uint8_t>& is_valid, int64_t& n_stored) const;
    KeyedMemory make_engine(int64_t dim) const;
    /// With max_age, forgets keys that hold no point once they outnumber the live ones.
    void drop_expired_keys();
    std::vector<int64_t> key_ids(const int64_t* keys, int64_t n, std::vector<int64_t>& new_keys) const;
    /// The penalty of each rollout (0 where none is due) once the step is stored.
    std::vector<double> penalties_of(const Penalties& answer, const std::vector<uint8_t>& is_correct,
                                     const std::vector<uint8_t>& is_valid) const;

    MemoryOptions options_;
    int64_t dim_ = 0;
    int64_t last_step_ = -1;
    std::vector<int64_t> keys_;
    std::unordered_map<int64_t, int64_t> key_index_;  ///< key -> id
    std::vector<double> last_penalties_;
    std::optional<KeyedMemory> engine_;  ///< created by the first step that stores a point
    PenaltyFunction penalty_;            ///< null: default_penalty
};

}  // namespace medscore
