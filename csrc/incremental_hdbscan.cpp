// The incremental HDBSCAN* engine (medscore/incremental_hdbscan.hpp).
//
// An insert appends the rows and repairs the graph with insert_rows() (csrc/incremental.cpp);
// a removal keeps the neighbour lists no removed point appears in and every old MST edge
// whose weight did not change (each is still lightest across its fundamental cut: every
// crossing edge kept or raised its weight), and completes that forest with the batch MST.
// Both are exact, so the graph equals a refit's; the hierarchy is recomputed from the MST.
// Updates rebuild the graph instead while k still grows (N <= min_samples), when a batch is
// as large as the memory (cheaper), and while a live row lies beyond max_safe_magnitude()
// of the first batch's mean (squared distances could overflow; the batch stages are exact
// there, the repair's pruning bounds are not).
#include "medscore/incremental_hdbscan.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "medscore/condense.hpp"
#include "medscore/core_distance.hpp"
#include "medscore/distance.hpp"
#include "medscore/kdtree.hpp"
#include "medscore/linkage.hpp"
#include "medscore/mst.hpp"

namespace medscore {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

PointsView view_of(const std::vector<double>& points, int64_t rows, int64_t dim) {
    return PointsView{points.data(), rows, dim};
}

}  // namespace

std::vector<int64_t> match_labels(const std::vector<int64_t>& old_labels, const std::vector<int64_t>& new_raw,
                                  int64_t n_raw, int64_t& next_label) {
    if (old_labels.size() != new_raw.size()) throw std::invalid_argument("match_labels: sizes differ");
    std::vector<std::pair<int64_t, int64_t>> pairs;
    pairs.reserve(old_labels.size());
    for (size_t i = 0; i < old_labels.size(); ++i) {
        if (old_labels[i] >= 0 && new_raw[i] >= 0) pairs.emplace_back(old_labels[i], new_raw[i]);
    }
    std::sort(pairs.begin(), pairs.end());
    struct Count {
        int64_t count, old, raw;
    };
    std::vector<Count> counts;
    for (size_t first = 0, last = 0; first < pairs.size(); first = last) {
        while (last < pairs.size() && pairs[last] == pairs[first]) ++last;
        counts.push_back(Count{static_cast<int64_t>(last - first), pairs[first].first, pairs[first].second});
    }
    std::sort(counts.begin(), counts.end(), [](const Count& a, const Count& b) {
        return std::make_tuple(-a.count, a.old, a.raw) < std::make_tuple(-b.count, b.old, b.raw);
    });
    std::vector<int64_t> mapping(static_cast<size_t>(n_raw), -1);
    std::vector<int64_t> taken_old;  // few: one per raw cluster at most
    for (const Count& c : counts) {
        if (mapping[c.raw] >= 0 || std::find(taken_old.begin(), taken_old.end(), c.old) != taken_old.end()) continue;
        mapping[c.raw] = c.old;
        taken_old.push_back(c.old);
    }
    for (int64_t& m : mapping) {
        if (m < 0) m = next_label++;
    }
    return mapping;
}

IncrementalHDBSCAN::IncrementalHDBSCAN(const IncrementalParams& params) : params_(params) {
    if (params.min_cluster_size < 2) throw std::invalid_argument("min_cluster_size must be >= 2");
    if (params.min_samples < 1) throw std::invalid_argument("min_samples must be >= 1");
    if (params.capacity < 0) throw std::invalid_argument("capacity must be >= 0 (0: unbounded)");
    if (params.n_threads < 0) throw std::invalid_argument("n_threads must be >= 0");
    if (params.max_cluster_size < 0) throw std::invalid_argument("max_cluster_size must be >= 0 (0: no limit)");
    if (!(params.epsilon_max >= 0.0)) throw std::invalid_argument("epsilon_max must be >= 0 (inf: no limit)");
}

IncrementalHDBSCAN::~IncrementalHDBSCAN() = default;
IncrementalHDBSCAN::IncrementalHDBSCAN(IncrementalHDBSCAN&&) noexcept = default;
IncrementalHDBSCAN& IncrementalHDBSCAN::operator=(IncrementalHDBSCAN&&) noexcept = default;

IncrementalHDBSCAN::IncrementalHDBSCAN(const IncrementalParams& params, IncrementalState state)
    : IncrementalHDBSCAN(params) {
    const auto n = state.ids.size();
    const auto dim = static_cast<size_t>(std::max<int64_t>(state.dim, 0));
    const auto k = static_cast<size_t>(std::max<int64_t>(state.graph.k, 0));
    const bool empty_graph = n == 0 && state.graph.knn_index.empty() && state.graph.mst.empty();
    const bool sizes = state.dim >= 0 && state.shift.size() == dim && state.points.size() == n * dim &&
                       state.magnitude.size() == n && state.labels.size() == n && state.probabilities.size() == n &&
                       (empty_graph || (k >= 1 && state.graph.knn_index.size() == n * k &&
                                        state.graph.knn_dist.size() == n * k && state.graph.core.size() == n &&
                                        state.graph.mst.size() == n - 1)) &&
                       (n == 0 || dim >= 1);
    if (!sizes) throw std::invalid_argument("IncrementalHDBSCAN: the state's arrays do not match its sizes");
    for (size_t i = 0; i < n; ++i) {
        if ((i > 0 && state.ids[i] <= state.ids[i - 1]) || state.ids[i] < 0 || state.ids[i] >= state.next_id) {
            throw std::invalid_argument("IncrementalHDBSCAN: the state's ids must ascend below next_id");
        }
        if (state.labels[i] < -1 || state.labels[i] >= state.next_label) {
            throw std::invalid_argument("IncrementalHDBSCAN: the state's labels must lie in [-1, next_label)");
        }
    }
    for (const int64_t q : state.graph.knn_index) {
        if (q < -1 || q >= static_cast<int64_t>(n)) throw std::invalid_argument("IncrementalHDBSCAN: neighbour out of range");
    }
    for (const MstEdge& e : state.graph.mst) {
        if (e.u < 0 || e.v < 0 || e.u >= static_cast<int64_t>(n) || e.v >= static_cast<int64_t>(n)) {
            throw std::invalid_argument("IncrementalHDBSCAN: MST edge out of range");
        }
    }
    s_ = std::move(state);
}

bool IncrementalHDBSCAN::repairable(const std::vector<double>& magnitude) const noexcept {
    const double limit = max_safe_magnitude(s_.dim);
    for (const double m : magnitude) {
        if (!(m <= limit)) return false;
    }
    return true;
}

IncrementalGraph IncrementalHDBSCAN::full_graph(const std::vector<double>& points, int64_t rows) const {
    IncrementalGraph g;
    g.k = effective_min_samples(params_.min_samples, rows);
    if (rows == 1) {
        g.knn_index = {-1};
        g.knn_dist = {std::numeric_limits<double>::infinity()};
        g.core = {0.0};
        return g;
    }
    const PointsView view = view_of(points, rows, s_.dim);
    Neighbors nn = nearest_neighbors(view, g.k, params_.n_threads);
    g.knn_index = std::move(nn.indices);
    g.knn_dist = std::move(nn.distances);
    g.core.resize(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) g.core[i] = g.knn_dist[(i + 1) * g.k - 1];
    g.mst = minimum_spanning_tree(view, g.core, params_.n_threads);
    return g;
}

void IncrementalHDBSCAN::append_rows(Live& live, const PointsView& rows, int64_t first_id) const {
    live.points.insert(live.points.end(), rows.data, rows.data + rows.rows * rows.cols);
    for (int64_t i = 0; i < rows.rows; ++i) {
        live.ids.push_back(first_id + i);
        double m = 0.0;
        for (int64_t j = 0; j < s_.dim; ++j) m = std::max(m, std::abs(rows.row(i)[j] - s_.shift[j]));
        live.magnitude.push_back(m);
    }
}

IncrementalGraph IncrementalHDBSCAN::graph_after_append(const Live& live, int64_t n_old) const {
    const int64_t n = static_cast<int64_t>(live.ids.size());
    if (n_old - 1 < params_.min_samples || n - n_old >= n_old || !repairable(live.magnitude)) {
        tree_.reset();
        return full_graph(live.points, n);
    }
    const PointsView all = view_of(live.points, n, s_.dim);
    // A tree over exactly the old rows grows by the new ones; any other is rebuilt. (If the
    // repair below fails, the tree holds rows the engine does not: the size check drops it.)
    bool grown = false;
    if (tree_ && tree_->size() == n_old) {
        try {
            grown = tree_->insert(all);
        } catch (...) {  // out of memory part way: the tree is no longer whole
            tree_.reset();
            throw;
        }
    }
    if (!grown) {
        tree_.reset();
        tree_ = std::make_unique<KdTree>(all);
    }
    return insert_rows(all, n_old, live.graph, *tree_, params_.n_threads);
}

IncrementalHDBSCAN::Live IncrementalHDBSCAN::without(const std::vector<char>& gone) const {
    tree_.reset();  // rows are renumbered
    const int64_t n_before = size();
    Live live;
    std::vector<int64_t> position(static_cast<size_t>(n_before), -1);
    for (int64_t i = 0; i < n_before; ++i) {
        if (gone[i]) continue;
        position[i] = static_cast<int64_t>(live.ids.size());
        live.ids.push_back(s_.ids[i]);
        live.magnitude.push_back(s_.magnitude[i]);
        live.points.insert(live.points.end(), s_.points.begin() + i * s_.dim, s_.points.begin() + (i + 1) * s_.dim);
    }
    const int64_t n = static_cast<int64_t>(live.ids.size());
    if (n == 0) return live;
    if (n - 1 < params_.min_samples || !repairable(live.magnitude)) {
        live.graph = full_graph(live.points, n);
        return live;
    }
    // Here k = min_samples both before and after (n - 1 >= min_samples).
    const int64_t k = s_.graph.k;
    const PointsView view = view_of(live.points, n, s_.dim);
    IncrementalGraph& g = live.graph;
    g.k = k;
    g.knn_index.resize(static_cast<size_t>(n * k));
    g.knn_dist.resize(static_cast<size_t>(n * k));
    std::vector<int64_t> stale;
    for (int64_t i = 0; i < n_before; ++i) {
        const int64_t row = position[i];
        if (row < 0) continue;
        bool lost = false;
        for (int64_t j = 0; j < k; ++j) {
            const int64_t q = position[s_.graph.knn_index[i * k + j]];
            lost = lost || q < 0;
            g.knn_index[row * k + j] = q;
            g.knn_dist[row * k + j] = s_.graph.knn_dist[i * k + j];
        }
        if (lost) stale.push_back(row);
    }
    if (!stale.empty()) {
        std::vector<int64_t> index;
        std::vector<double> dist;
        nearest_neighbors_of_rows(view, stale, k, index, dist, params_.n_threads);
        for (size_t s = 0; s < stale.size(); ++s) {
            std::copy(index.begin() + s * k, index.begin() + (s + 1) * k, g.knn_index.begin() + stale[s] * k);
            std::copy(dist.begin() + s * k, dist.begin() + (s + 1) * k, g.knn_dist.begin() + stale[s] * k);
        }
    }
    g.core.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g.core[i] = g.knn_dist[(i + 1) * k - 1];
    std::vector<MstEdge> forest;
    for (const MstEdge& e : s_.graph.mst) {
        const int64_t u = position[e.u], v = position[e.v];
        if (u < 0 || v < 0) continue;
        double w = e.weight;
        if (g.core[u] != s_.graph.core[e.u] || g.core[v] != s_.graph.core[e.v]) {
            w = std::max({g.core[u], g.core[v], euclidean_distance(view.row(u), view.row(v), s_.dim)});
        }
        if (w == e.weight) forest.push_back(MstEdge{u, v, w});
    }
    g.mst = minimum_spanning_tree(view, g.core, params_.n_threads, &forest);
    return live;
}

IncrementalHDBSCAN::Hierarchy IncrementalHDBSCAN::hierarchy_of(const Live& next, const int64_t* old_ids,
                                                              size_t n_old_ids) const {
    const int64_t n = static_cast<int64_t>(next.ids.size());
    Hierarchy h;
    std::vector<int64_t> raw(static_cast<size_t>(n), -1);
    h.probabilities.assign(static_cast<size_t>(n), 0.0);
    if (n >= 2) {
        const std::vector<LinkageRow> linkage = single_linkage(next.graph.mst, n);
        h.condensed = condense_tree(linkage, n, params_.min_cluster_size);
        SelectOptions options;
        options.method = params_.method;
        options.allow_single_cluster = params_.allow_single_cluster;
        options.max_cluster_size = params_.max_cluster_size;
        options.epsilon_max = params_.epsilon_max;
        Selection s = select_clusters(h.condensed, n, options);
        raw = std::move(s.labels);
        h.probabilities = std::move(s.probabilities);
    }
    int64_t n_raw = 0;
    for (const int64_t r : raw) n_raw = std::max(n_raw, r + 1);
    // Points live before and after: ids ascend in both, so one merge walk pairs them.
    std::vector<int64_t> old_labels, new_raw;
    for (size_t i = 0, j = 0; i < n_old_ids && j < next.ids.size();) {
        if (old_ids[i] < next.ids[j]) {
            ++i;
        } else if (old_ids[i] > next.ids[j]) {
            ++j;
        } else {
            old_labels.push_back(s_.labels[i++]);
            new_raw.push_back(raw[j++]);
        }
    }
    h.next_label = s_.next_label;
    const std::vector<int64_t> mapping = match_labels(old_labels, new_raw, n_raw, h.next_label);
    h.labels.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h.labels[i] = raw[i] >= 0 ? mapping[raw[i]] : -1;
    return h;
}

void IncrementalHDBSCAN::install(Live&& next, Hierarchy&& h) noexcept {
    s_.points = std::move(next.points);
    s_.ids = std::move(next.ids);
    s_.magnitude = std::move(next.magnitude);
    s_.graph = std::move(next.graph);
    s_.labels = std::move(h.labels);
    s_.probabilities = std::move(h.probabilities);
    s_.condensed = std::move(h.condensed);
    s_.next_label = h.next_label;
}

void IncrementalHDBSCAN::grow_in_place(const PointsView& rows, int64_t first_id) {
    // Appending to a copy of the points would cost O(N D) per insert: the rows go onto the
    // live arrays and come back off if anything fails before install().
    const size_t n_old = s_.ids.size();
    Live next{std::move(s_.points), std::move(s_.ids), std::move(s_.magnitude), std::move(s_.graph)};
    try {
        append_rows(next, rows, first_id);
        IncrementalGraph graph = graph_after_append(next, static_cast<int64_t>(n_old));
        std::swap(next.graph, graph);  // `graph` holds the old one until install()
        Hierarchy h;
        try {
            h = hierarchy_of(next, next.ids.data(), n_old);  // the old ids are the prefix
        } catch (...) {
            std::swap(next.graph, graph);
            throw;
        }
        install(std::move(next), std::move(h));
    } catch (...) {
        next.points.resize(n_old * static_cast<size_t>(s_.dim));
        next.ids.resize(n_old);
        next.magnitude.resize(n_old);
        s_.points = std::move(next.points);
        s_.ids = std::move(next.ids);
        s_.magnitude = std::move(next.magnitude);
        s_.graph = std::move(next.graph);
        throw;
    }
}

int64_t IncrementalHDBSCAN::insert(const PointsView& batch) {
    check_points(batch, "IncrementalHDBSCAN::insert");
    if (s_.dim != 0 && batch.cols != s_.dim) {
        throw std::invalid_argument("IncrementalHDBSCAN::insert: the batch has " + std::to_string(batch.cols) +
                                    " columns, the engine holds points of " + std::to_string(s_.dim));
    }
    for (int64_t i = 0; i < batch.rows * batch.cols; ++i) {
        if (!std::isfinite(batch.data[i])) {
            throw std::invalid_argument("IncrementalHDBSCAN::insert: row " + std::to_string(i / batch.cols) +
                                        " holds NaN or Inf");
        }
    }
    if (batch.rows > kInt64Max - s_.next_id) throw std::overflow_error("IncrementalHDBSCAN::insert: ids exhausted");
    const int64_t first_id = s_.next_id;
    const bool first = s_.dim == 0;
    if (first) {
        s_.dim = batch.cols;
        // Far rows are rebuilt, never repaired, so a mean that overflows may fall back to 0.
        s_.shift.assign(static_cast<size_t>(s_.dim), 0.0);
        for (int64_t i = 0; i < batch.rows; ++i) {
            for (int64_t j = 0; j < s_.dim; ++j) s_.shift[j] += batch.row(i)[j];
        }
        bool finite = true;
        for (double& s : s_.shift) finite = finite && std::isfinite(s /= static_cast<double>(batch.rows));
        if (!finite) std::fill(s_.shift.begin(), s_.shift.end(), 0.0);
    }
    PointsView kept = batch;
    if (params_.capacity > 0 && kept.rows > params_.capacity) {
        kept = PointsView{batch.row(batch.rows - params_.capacity), params_.capacity, batch.cols};
    }
    const int64_t kept_first_id = first_id + (batch.rows - kept.rows);
    const int64_t overflow = size() + kept.rows - (params_.capacity > 0 ? params_.capacity : kInt64Max);
    try {
        if (overflow > 0) {
            std::vector<char> gone(static_cast<size_t>(size()), 0);
            std::fill(gone.begin(), gone.begin() + overflow, 1);
            Live next = without(gone);
            const auto n_old = static_cast<int64_t>(next.ids.size());
            append_rows(next, kept, kept_first_id);
            IncrementalGraph graph = graph_after_append(next, n_old);
            next.graph = std::move(graph);
            Hierarchy h = hierarchy_of(next, s_.ids.data(), s_.ids.size());
            install(std::move(next), std::move(h));
        } else {
            grow_in_place(kept, kept_first_id);
        }
    } catch (...) {
        if (first) {
            s_.dim = 0;
            s_.shift.clear();
        }
        throw;
    }
    s_.next_id = first_id + batch.rows;
    return first_id;
}

void IncrementalHDBSCAN::remove(const std::vector<int64_t>& ids) {
    std::vector<char> gone(static_cast<size_t>(size()), 0);
    for (const int64_t id : ids) {
        const auto it = std::lower_bound(s_.ids.begin(), s_.ids.end(), id);
        if (it == s_.ids.end() || *it != id) {
            throw std::invalid_argument("IncrementalHDBSCAN::remove: unknown or already removed id " +
                                        std::to_string(id));
        }
        char& flag = gone[static_cast<size_t>(it - s_.ids.begin())];
        if (flag) throw std::invalid_argument("IncrementalHDBSCAN::remove: id " + std::to_string(id) + " repeated");
        flag = 1;
    }
    if (ids.empty()) return;
    Live next = without(gone);
    Hierarchy h = hierarchy_of(next, s_.ids.data(), s_.ids.size());
    install(std::move(next), std::move(h));
}

}  // namespace medscore
