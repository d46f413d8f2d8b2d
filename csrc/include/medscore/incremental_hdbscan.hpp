// The exact incremental HDBSCAN* engine: a stream of inserts and removals whose clustering
// equals, after every update, a batch refit (medscore/hdbscan.hpp) of the live points in id
// order. The engine owns all its state (points, neighbour lists, core distances, MST,
// hierarchy, stable labels); bindings and the C API only read it.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "medscore/incremental.hpp"
#include "medscore/matrix.hpp"
#include "medscore/select.hpp"
#include "medscore/types.hpp"

namespace medscore {

struct IncrementalParams {
    int64_t min_cluster_size = 5;  ///< >= 2
    int64_t min_samples = 5;       ///< >= 1; clipped to N - 1 while fewer points are live
    SelectionMethod method = SelectionMethod::eom;
    bool allow_single_cluster = false;
    int64_t capacity = 0;          ///< most live points (first in, first out); 0: unbounded
    int n_threads = 0;             ///< 0: every hardware thread
    int64_t max_cluster_size = 0;  ///< EOM: larger clusters are not selected; 0: no limit (SelectOptions)
    double epsilon_max = std::numeric_limits<double>::infinity();  ///< EOM: cluster_selection_epsilon_max
};

/// Stable labels of a new raw partition (the rule of medscore.incremental.match_labels):
/// over the points live before and after an update, count the points each pair (old stable
/// label L >= 0, new raw cluster j >= 0) shares; take pairs by decreasing count, then smaller
/// L, then smaller j, when neither L nor j is taken; j keeps L. Raw clusters left over get
/// next_label, next_label + 1, ... in increasing j (next_label is advanced). Labels are never
/// reused. `old_labels` and `new_raw` have one entry per persisting point.
/// Returns the stable label of each raw cluster [n_raw].
std::vector<int64_t> match_labels(const std::vector<int64_t>& old_labels, const std::vector<int64_t>& new_raw,
                                  int64_t n_raw, int64_t& next_label);

/// Everything an engine holds between updates (positions index ids, in id order).
struct IncrementalState {
    int64_t dim = 0;                 ///< 0 until the first insert
    std::vector<double> shift;       ///< [dim] mean of the first batch (zeros if it overflowed)
    std::vector<double> points;      ///< [N * dim] row-major
    std::vector<int64_t> ids;        ///< [N] ascending
    std::vector<double> magnitude;   ///< [N] max |x - shift| per row (inf where it overflows)
    IncrementalGraph graph;          ///< neighbour lists, core distances, MST
    std::vector<int64_t> labels;     ///< [N] stable labels, -1 noise
    std::vector<double> probabilities;          ///< [N]
    std::vector<CondensedRow> condensed;        ///< condensed tree over positions
    int64_t next_id = 0;
    int64_t next_label = 0;
};

class KdTree;

class IncrementalHDBSCAN {
public:
    /// Throws std::invalid_argument on invalid parameters.
    explicit IncrementalHDBSCAN(const IncrementalParams& params);
    ~IncrementalHDBSCAN();
    IncrementalHDBSCAN(IncrementalHDBSCAN&&) noexcept;
    IncrementalHDBSCAN& operator=(IncrementalHDBSCAN&&) noexcept;

    /// An engine holding `state` (as state() returned it, e.g. after a round trip through a
    /// pickle). Sizes and id order are checked (std::invalid_argument); the contents are
    /// trusted to be an engine's.
    IncrementalHDBSCAN(const IncrementalParams& params, IncrementalState state);

    /// Adds the rows of `batch` (finite; as many columns as the first batch) with ids
    /// next_id() .. next_id() + rows - 1, evicting the oldest points first when `capacity`
    /// would be exceeded, and reclusters exactly. Returns the first id given.
    /// Throws std::invalid_argument (bad batch) or std::overflow_error (ids exhausted); the
    /// state is then exactly as before the call.
    int64_t insert(const PointsView& batch);

    /// Deletes live points by id (distinct, live; std::invalid_argument otherwise, state
    /// unchanged) and reclusters exactly.
    void remove(const std::vector<int64_t>& ids);

    const IncrementalParams& params() const noexcept { return params_; }
    const IncrementalState& state() const noexcept { return s_; }
    int64_t size() const noexcept { return static_cast<int64_t>(s_.ids.size()); }
    int64_t dim() const noexcept { return s_.dim; }
    /// Live points [size() * dim()], row-major, in id order.
    const std::vector<double>& points() const noexcept { return s_.points; }
    const std::vector<int64_t>& ids() const noexcept { return s_.ids; }  ///< [N], ascending
    /// Neighbour lists [N * k], core distances [N] and MST [N - 1] (positions in ids()).
    const IncrementalGraph& graph() const noexcept { return s_.graph; }
    const std::vector<int64_t>& labels() const noexcept { return s_.labels; }  ///< [N], stable, -1 noise
    const std::vector<double>& probabilities() const noexcept { return s_.probabilities; }  ///< [N]
    const std::vector<CondensedRow>& condensed_tree() const noexcept { return s_.condensed; }
    int64_t next_id() const noexcept { return s_.next_id; }
    int64_t next_label() const noexcept { return s_.next_label; }

private:
    /// Points and their graph: what an update rebuilds or repairs.
    struct Live {
        std::vector<double> points;
        std::vector<int64_t> ids;
        std::vector<double> magnitude;  ///< [N] max |x - shift| per row (inf where it overflows)
        IncrementalGraph graph;
    };

    /// Labels, probabilities and condensed tree of a graph, labels matched to the current ones.
    struct Hierarchy {
        std::vector<int64_t> labels;
        std::vector<double> probabilities;
        std::vector<CondensedRow> condensed;
        int64_t next_label = 0;
    };

    Live without(const std::vector<char>& gone) const;
    void append_rows(Live& live, const PointsView& rows, int64_t first_id) const;
    IncrementalGraph graph_after_append(const Live& live, int64_t n_old) const;
    /// `old_ids` [n_old_ids]: the ids live before the update, whose labels_ are matched.
    Hierarchy hierarchy_of(const Live& next, const int64_t* old_ids, size_t n_old_ids) const;
    void grow_in_place(const PointsView& rows, int64_t first_id);
    void install(Live&& next, Hierarchy&& hierarchy) noexcept;
    bool repairable(const std::vector<double>& magnitude) const noexcept;
    IncrementalGraph full_graph(const std::vector<double>& points, int64_t rows) const;

    IncrementalParams params_;
    IncrementalState s_;
    /// kd-tree over the live points, grown by each repaired insert (KdTree::insert) and
    /// dropped by anything else; rebuilt when missing, stale or a leaf is full (a batch build
    /// leaves them 16-32 points, so small inserts grow it for a while; leaves of 16 made the
    /// searches of a 1,024-point insert at 100k x 32 about 30% slower). A cache: it never
    /// changes a result, only the time an insert takes.
    mutable std::unique_ptr<KdTree> tree_;
};

}  // namespace medscore
