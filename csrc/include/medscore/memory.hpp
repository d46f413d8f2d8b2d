// The keyed error memory of MEDS: one exact HDBSCAN clustering per key, updated per step.
//
// A KeyedMemory holds, for every key (a dense id >= 0), the points inserted so far in
// insertion order, the step each was inserted at, the cluster label of each point (clusters
// numbered by their earliest member, see number_clusters), and the
// minimum spanning tree of the mutual-reachability graph. `penalize_step` processes every
// key of a batch in one call, with threads across keys. It is plain C++ (no Python), and
// its whole state is exported and imported as plain arrays (MemoryState).
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "medscore/hdbscan.hpp"
#include "medscore/matrix.hpp"
#include "medscore/types.hpp"

namespace medscore {

class WorkerPool;  // thread_pool.hpp (private)

/// The largest step a memory takes (2^63 - 2): "the last step + 1" then never overflows.
constexpr int64_t kMaxStep = INT64_MAX - 1;

/// How the cluster of a newly inserted point is decided.
enum class AssignRule {
    exact,  ///< its label once the step's points are inserted and the key re-clustered
    paper,  ///< k-NN cosine majority vote against the labels before the step (MEDS)
};

/// Options of a KeyedMemory. Values are validated by the constructor (std::invalid_argument).
struct MemoryParams {
    int64_t dim = 0;              ///< fingerprint dimension D (>= 1)
    HdbscanParams hdbscan;        ///< clustering parameters; hdbscan.n_threads is ignored
    AssignRule assign = AssignRule::paper;
    int64_t vote_k = 3;           ///< neighbours in the paper vote (>= 1)
    int64_t max_age = -1;         ///< points with step - inserted_step > max_age are dropped; -1: never
    int64_t capacity = -1;        ///< at most this many points per key, oldest dropped first; -1: no limit
    int n_threads = 0;            ///< threads across keys; 0 = every hardware thread
    /// Store each row divided by its Euclidean norm, with the bits of NumPy's
    /// `x / np.linalg.norm(x, axis=1, keepdims=True)` (normalize.hpp); a zero row is an error.
    bool normalize = false;
};

/// Per-rollout answer of penalize_step.
struct StepResult {
    std::vector<int64_t> labels;  ///< [N] cluster label within the rollout's key, -1 for noise
    std::vector<int64_t> sizes;   ///< [N] members of that cluster; for noise, the number of noise points
};

/// The whole memory as plain arrays (keys in id order, each key's points in insertion order).
struct MemoryState {
    int64_t dim = 0;
    int64_t last_step = -1;          ///< step of the last penalize_step; -1 before the first
    std::vector<int64_t> offsets;    ///< [K + 1]; key k holds points offsets[k] .. offsets[k+1]-1
    std::vector<double> points;      ///< [P * dim] row-major
    std::vector<int64_t> steps;      ///< [P] insertion step of each point
    std::vector<int64_t> labels;     ///< [P] cluster label within its key, -1 noise
    std::vector<MstEdge> mst;        ///< max(n_k - 1, 0) edges per key in key order, local indices, sorted
};

/// Running totals over every stored point, for the eigenvalue diversity measure.
struct Moments {
    int64_t count = 0;
    std::vector<double> sum;        ///< [dim] sum of points
    std::vector<double> outer_sum;  ///< [dim * dim] sum of x x^T
};

/// Points, steps, labels and MST of one key.
struct KeyState {
    std::vector<double> points;        ///< [n * dim]
    std::vector<int64_t> steps;        ///< [n]
    std::vector<int64_t> labels;       ///< [n]
    std::vector<int64_t> cluster_sizes;///< [n_clusters], by label
    int64_t noise = 0;                 ///< points labelled -1
    std::vector<MstEdge> mst;          ///< [n - 1] sorted by (weight, u, v); empty when n < 2
    /// Euclidean norm of the first norms.size() points, for the vote; derived (not part of the
    /// state), computed as points arrive and completed on demand after a load.
    std::vector<double> norms;

    int64_t size() const noexcept { return static_cast<int64_t>(steps.size()); }
};

/// One exact HDBSCAN clustering per key, with the MEDS vote and FIFO staleness.
class KeyedMemory {
public:
    explicit KeyedMemory(const MemoryParams& params);

    /// Processes one step: for every key present in `keys`, drops points older than
    /// max_age, decides each new point's cluster (AssignRule), inserts the points, enforces
    /// the capacity and re-clusters the key (incrementally when min_samples == 1 and
    /// nothing was dropped, else by a full refit; both give the batch answer).
    /// `points` is [N, dim], `keys` [N] dense ids >= 0, or -1 for a row that is not stored
    /// (its answer is label -1, size 0, and it may hold NaN or Inf); `step` >= last_step().
    /// Stored rows must be finite (and, with params.normalize, not all zero).
    /// Throws std::invalid_argument on bad input; on any exception the memory is unchanged.
    StepResult penalize_step(const PointsView& points, const int64_t* keys, int64_t step);
    /// penalize_step writing the answers into the caller's buffers `labels` and `sizes`
    /// ([N] each; their contents are unspecified after an exception).
    void penalize_step(const PointsView& points, const int64_t* keys, int64_t step, int64_t* labels, int64_t* sizes);

    const MemoryParams& params() const noexcept { return params_; }
    int64_t last_step() const noexcept { return last_step_; }
    int64_t n_keys() const noexcept;      ///< keys holding at least one point
    int64_t n_points() const noexcept;
    int64_t n_clusters() const noexcept;  ///< summed over keys
    int64_t n_noise() const noexcept;     ///< summed over keys
    /// The state of key `key` (empty for an unknown key id).
    const KeyState& key_state(int64_t key) const;

    Moments moments() const;
    MemoryState state() const;
    /// Replaces the memory by `state` after checking it (std::invalid_argument); all or nothing.
    void load_state(const MemoryState& state);
    /// Points held by each key id ([number of key ids]; 0 for an empty or expired key).
    std::vector<int64_t> key_sizes() const;
    /// Renumbers the keys: key i becomes the old key `kept[i]` (strictly increasing ids); every
    /// key left out must be empty (std::invalid_argument otherwise, and nothing changes). Lets
    /// the owner of the key ids drop expired keys so that bookkeeping stays bounded by what is live.
    void compact(const std::vector<int64_t>& kept);

private:
    MemoryParams params_;
    int64_t last_step_ = -1;
    std::vector<KeyState> keys_;
    /// (step, key) for each step a key received points at, oldest first; only with max_age.
    /// Each step expires the keys whose oldest points aged out, whether the batch holds them or
    /// not, so points (and the work of a step) are bounded by what is live.
    std::deque<std::pair<int64_t, int64_t>> arrivals_;
    void rebuild_arrivals();
    /// Threads across keys, kept between steps and shared by every memory of the process with
    /// the same thread count (calls from several memories at once are serialised).
    std::shared_ptr<WorkerPool> pool_;
};

/// Renumbers `labels` (-1 noise, clusters 0..K-1) of the points `points` (inserted at
/// `steps`, non-decreasing) so that clusters are ordered by their earliest member: the one
/// with the smallest (step, vector in lexicographic order). The numbering then depends
/// neither on how the clustering was computed nor on the order of points within a step.
/// Returns the cluster sizes by new label and writes the noise count.
std::vector<int64_t> number_clusters(std::vector<int64_t>& labels, const PointsView& points, const int64_t* steps,
                                     int64_t& noise);

/// Minimum spanning tree of `n_old + m` points after appending m points to a set whose MST
/// (n_old >= 1 points) is `mst`, under plain Euclidean weights (mutual reachability with
/// min_samples == 1). `points` holds all n_old + m rows; `mst` must be sorted by (weight, u, v).
/// Each new point keeps the edges that one walk over the old tree leaves it (the cycle rule),
/// and Kruskal joins those, the old tree and the new points' own MST. Returns the tree sorted
/// by (weight, u, v); it is minimal under that strict order among trees of old tree + new edges.
/// `squared`, if not null, holds m rows of `squared_stride` (>= n_old + m) entries: row j the
/// squared distances (squared_distance of distance.hpp) from new row n_old + j to every row,
/// which are then not recomputed. `linkage`, if not null, receives the tree's single-linkage
/// rows (the rows single_linkage of linkage.hpp gives for it), built in the same pass.
std::vector<MstEdge> insert_into_mst(const std::vector<MstEdge>& mst, const PointsView& points,
                                     int64_t n_old, const double* squared = nullptr, int64_t squared_stride = 0,
                                     std::vector<LinkageRow>* linkage = nullptr);

/// insert_into_mst without the O(m * n_old) distances: the new rows' own MST (by halves, as
/// euclidean_mst_by_halves) and, from a kd-tree over all rows, only the candidate edges from
/// new to old rows that the cycle rule can keep (bridge_edges of incremental.hpp). The same
/// tree as insert_into_mst; for large memories (a global memory grown in big chunks).
std::vector<MstEdge> insert_into_mst_by_kdtree(const std::vector<MstEdge>& mst, const PointsView& points,
                                               int64_t n_old, int n_threads);

/// The same tree as euclidean_mst(points) (Euclidean weights, minimal under (weight, u, v),
/// sorted) in about O(N log^2 N) for clustered data: the MSTs of the two halves joined by the
/// kd-tree candidate edges between them, recursively (Prim below 512 rows).
std::vector<MstEdge> euclidean_mst_by_halves(const PointsView& points, int n_threads);

/// Minimum spanning tree [N - 1] of `points` by Prim's algorithm (O(N^2 D)): the one tree
/// that is minimal under the strict order (weight, u, v), sorted by that order. Weights are
/// Euclidean distances, or with `core` ([N] core distances) mutual reachabilities
/// max(core[a], core[b], d(a, b)).
std::vector<MstEdge> euclidean_mst(const PointsView& points, const std::vector<double>* core = nullptr);

}  // namespace medscore
