// Stage 2 of docs/SPEC.md: exact mutual-reachability MST by Boruvka over a kd-tree.
//
// Each round finds, for every component, its minimum outgoing edge under the strict total
// order (weight, min position, max position) on tree positions. A strict total order makes
// the chosen edges acyclic even under tied weights. A point's search prunes subtrees whose
// points all lie in its own component, and subtrees whose lower bound
// max(core[q], min core in node, box distance) exceeds the best edge known for the point or
// for its component (shared between threads). Every weight that is kept is computed with the
// bit-defined distance; bounds are never larger than the exact values (see kdtree.hpp).
#include "medscore/mst.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>

#include "medscore/distance_batch.hpp"
#include "medscore/knn.hpp"
#include "medscore/kruskal.hpp"
#include "medscore/thread_pool.hpp"
#include "medscore/union_find.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// An edge between tree positions a < b, ordered by (w, a, b).
struct EdgeKey {
    double w;
    int64_t a;
    int64_t b;
    bool operator<(const EdgeKey& o) const noexcept { return std::tie(w, a, b) < std::tie(o.w, o.a, o.b); }
};
constexpr EdgeKey kNoEdge{kInf, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()};

void atomic_min(std::atomic<double>& target, double value) noexcept {
    double current = target.load(std::memory_order_relaxed);
    while (value < current && !target.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
    }
}

class Boruvka {
public:
    Boruvka(const KdTree& tree, const std::vector<double>& core, const Neighbors* seeds)
        : tree_(tree), n_(tree.size()), seeds_(seeds), core_(static_cast<size_t>(n_)),
          comp_(static_cast<size_t>(n_)), best_(static_cast<size_t>(n_), kNoEdge),
          point_lower_(static_cast<size_t>(n_), 0.0), bound_(static_cast<size_t>(n_)),
          node_comp_(tree.nodes().size()), node_min_core_(tree.nodes().size()) {
        for (int64_t pos = 0; pos < n_; ++pos) core_[pos] = core[tree.original(pos)];
        const auto& nodes = tree.nodes();
        for (size_t id = nodes.size(); id-- > 0;) {
            const KdNode& node = nodes[id];
            node_min_core_[id] = node.left < 0
                ? *std::min_element(core_.begin() + node.start, core_.begin() + node.end)
                : std::min(node_min_core_[node.left], node_min_core_[node.right]);
        }
    }

    /// Adds the minimum outgoing edge of every component to `forest` (positions a < b).
    /// Returns the number of edges added.
    int64_t round(UnionFind& components, std::vector<EdgeKey>& forest, int n_threads) {
        refresh_components(components);
        parallel_for(n_, n_threads, 512, [&](int64_t begin, int64_t end) { seed(begin, end); });
        for (int64_t pos = 0; pos < n_; ++pos) bound_[pos].store(kInf, std::memory_order_relaxed);
        for (int64_t pos = 0; pos < n_; ++pos) atomic_min(bound_[comp_[pos]], best_[pos].w);
        parallel_for(n_, n_threads, 64, [&](int64_t begin, int64_t end) {
            std::vector<std::pair<double, int32_t>> stack;
            for (int64_t pos = begin; pos < end; ++pos) search(pos, stack);
        });
        std::vector<EdgeKey> comp_best(static_cast<size_t>(n_), kNoEdge);
        for (int64_t pos = 0; pos < n_; ++pos) comp_best[comp_[pos]] = std::min(comp_best[comp_[pos]], best_[pos]);
        int64_t added = 0;
        for (int64_t pos = 0; pos < n_; ++pos) {
            if (comp_[pos] != pos) continue;
            const EdgeKey& edge = comp_best[pos];
            if (edge.a == kNoEdge.a) throw std::logic_error("minimum_spanning_tree: component without outgoing edge");
            if (components.unite(edge.a, edge.b)) {
                forest.push_back(edge);
                ++added;
            }
        }
        return added;
    }

private:
    void refresh_components(UnionFind& components) {
        for (int64_t pos = 0; pos < n_; ++pos) comp_[pos] = components.find(pos);
        const auto& nodes = tree_.nodes();
        for (size_t id = nodes.size(); id-- > 0;) {
            const KdNode& node = nodes[id];
            if (node.left >= 0) {
                const int64_t l = node_comp_[node.left], r = node_comp_[node.right];
                node_comp_[id] = l == r ? l : -1;
                continue;
            }
            const int64_t first = comp_[node.start];
            const bool same = std::all_of(comp_.begin() + node.start, comp_.begin() + node.end,
                                          [&](int64_t c) { return c == first; });
            node_comp_[id] = same ? first : -1;
        }
    }

    /// First candidate of each point: its nearest neighbours in other components.
    void seed(int64_t begin, int64_t end) {
        for (int64_t q = begin; q < end; ++q) {
            EdgeKey best = kNoEdge;
            if (seeds_ != nullptr) {
                const int64_t row = tree_.original(q), k = seeds_->k;
                for (int64_t j = 0; j < k; ++j) {
                    const int64_t p = tree_.position(seeds_->indices[row * k + j]);
                    if (comp_[p] == comp_[q]) continue;
                    const double w = std::max({core_[q], core_[p], seeds_->distances[row * k + j]});
                    best = std::min(best, EdgeKey{w, std::min(p, q), std::max(p, q)});
                }
            }
            best_[q] = best;
        }
    }

    /// Smallest (min, max) position pair between q and a point of `node` other than q.
    static std::pair<int64_t, int64_t> pair_lower_bound(int64_t q, const KdNode& node) noexcept {
        if (node.start < q) return {node.start, q};
        if (node.start > q) return {q, node.start};
        return {q, node.start + 1};
    }

    /// True if nothing in `node` (lower bound `lower`) can beat `best` or the component bound.
    bool prunable(int64_t q, int32_t id, double lower, const EdgeKey& best, double shared) const noexcept {
        if (lower > std::min(best.w, shared) || node_comp_[id] == comp_[q]) return true;
        if (lower < best.w) return false;
        const auto pair = pair_lower_bound(q, tree_.nodes()[id]);
        return pair >= std::make_pair(best.a, best.b);
    }

    void search(int64_t q, std::vector<std::pair<double, int32_t>>& stack) {
        std::atomic<double>& shared = bound_[comp_[q]];
        const double core_q = core_[q];
        if (std::max(core_q, point_lower_[q]) > shared.load(std::memory_order_relaxed)) {
            point_lower_[q] = std::max(core_q, point_lower_[q]);
            return;
        }
        EdgeKey best = best_[q];
        const auto& nodes = tree_.nodes();
        stack.clear();
        stack.emplace_back(core_q, 0);
        while (!stack.empty()) {
            const auto [lower, id] = stack.back();
            stack.pop_back();
            if (prunable(q, id, lower, best, shared.load(std::memory_order_relaxed))) continue;
            const KdNode& node = nodes[id];
            if (node.left < 0) {
                scan_leaf(q, node, best, shared);
                continue;
            }
            double child_lower[2];
            const int32_t children[2] = {node.left, node.right};
            for (int c = 0; c < 2; ++c) {
                const double bound = std::min(best.w, shared.load(std::memory_order_relaxed));
                const double floor = std::max(core_q, node_min_core_[children[c]]);
                child_lower[c] = floor > bound ? kInf : std::max(floor, tree_.lower_bound(q, children[c], bound));
            }
            const int nearer = child_lower[1] < child_lower[0] ? 1 : 0;
            stack.emplace_back(child_lower[1 - nearer], children[1 - nearer]);
            stack.emplace_back(child_lower[nearer], children[nearer]);
        }
        best_[q] = best;
        point_lower_[q] = std::max(point_lower_[q], std::min(best.w, shared.load(std::memory_order_relaxed)));
    }

    void scan_leaf(int64_t q, const KdNode& leaf, EdgeKey& best, std::atomic<double>& shared) const {
        const int64_t comp_q = comp_[q];
        int64_t candidates[KdTree::kLeafSize];
        const double* rows[KdTree::kLeafSize];
        double squared[KdTree::kLeafSize];
        int64_t count = 0;
        for (int64_t p = leaf.start; p < leaf.end; ++p) {
            if (comp_[p] == comp_q || !may_improve(q, p, best, shared)) continue;
            candidates[count] = p;
            rows[count++] = tree_.point(p);
        }
        squared_distances(tree_.point(q), rows, count, tree_.dim(), squared);
        for (int64_t j = 0; j < count; ++j) {
            const int64_t p = candidates[j];
            if (!may_improve(q, p, best, shared)) continue;
            const EdgeKey candidate{std::max({core_[q], core_[p], std::sqrt(squared[j])}), std::min(p, q),
                                    std::max(p, q)};
            if (candidate < best) {
                best = candidate;
                atomic_min(shared, candidate.w);
            }
        }
    }

    /// False if the edge (q, p) cannot beat `best` or the component bound, from the cores.
    bool may_improve(int64_t q, int64_t p, const EdgeKey& best, const std::atomic<double>& shared) const noexcept {
        const double floor = std::max(core_[q], core_[p]);
        if (floor > std::min(best.w, shared.load(std::memory_order_relaxed))) return false;
        return floor < best.w || std::make_pair(std::min(p, q), std::max(p, q)) < std::make_pair(best.a, best.b);
    }

    const KdTree& tree_;
    int64_t n_;
    const Neighbors* seeds_;
    std::vector<double> core_;          // by position
    std::vector<int64_t> comp_;         // by position: union-find root position
    std::vector<EdgeKey> best_;         // by position: best outgoing edge found this round
    std::vector<double> point_lower_;   // by position: lower bound of its best outgoing weight
    std::vector<std::atomic<double>> bound_;  // by root position: best weight of the component
    std::vector<int64_t> node_comp_;    // component of all points of a node, or -1
    std::vector<double> node_min_core_;
};

void check_edge(const MstEdge& e, int64_t n_points, const char* what) {
    if (e.u < 0 || e.v < 0 || e.u >= n_points || e.v >= n_points || e.u == e.v) {
        throw std::invalid_argument(std::string(what) + ": edge (" + std::to_string(e.u) + ", " +
                                    std::to_string(e.v) + ") is not between two of the " +
                                    std::to_string(n_points) + " points");
    }
}

}  // namespace

void sort_edges(std::vector<MstEdge>& edges) {
    for (auto& e : edges) {
        if (e.u > e.v) std::swap(e.u, e.v);
    }
    std::sort(edges.begin(), edges.end(), EdgeLess{});
}

std::vector<MstEdge> kruskal_merge(const std::vector<MstEdge>& a, const std::vector<MstEdge>& b, int64_t n,
                                   LinkageWorkspace& work, std::vector<LinkageRow>* linkage, const char* caller) {
    std::vector<MstEdge> tree;
    tree.reserve(static_cast<size_t>(n - 1));
    work.set_parent.resize(static_cast<size_t>(n));
    work.set_size.assign(static_cast<size_t>(n), 1);
    int64_t* parent = work.set_parent.data();
    int64_t* size = work.set_size.data();
    for (int64_t v = 0; v < n; ++v) parent[v] = v;
    // The linkage rows come with the tree: Kruskal already joins the sets in linkage order.
    int64_t* node_of_root = nullptr;
    if (linkage != nullptr) {
        linkage->clear();
        linkage->reserve(static_cast<size_t>(n - 1));
        work.node_of_root.resize(static_cast<size_t>(n));
        node_of_root = work.node_of_root.data();
        for (int64_t v = 0; v < n; ++v) node_of_root[v] = v;
    }
    size_t i = 0, j = 0;
    while (static_cast<int64_t>(tree.size()) < n - 1 && (i < a.size() || j < b.size())) {
        // On a tie the two edges are the same edge: either may go first, the second closes a cycle.
        const bool take_a = j == b.size() || (i < a.size() && edge_less(a[i], b[j]));
        const MstEdge& e = take_a ? a[i++] : b[j++];
        const int64_t ru = find_root(parent, e.u), rv = find_root(parent, e.v);
        if (ru == rv) continue;
        if (linkage != nullptr) linkage->push_back(LinkageRow{node_of_root[ru], node_of_root[rv], e.weight, size[ru] + size[rv]});
        const int64_t root = unite_roots(parent, size, ru, rv);
        if (linkage != nullptr) node_of_root[root] = n + static_cast<int64_t>(tree.size());
        tree.push_back(e);
    }
    if (static_cast<int64_t>(tree.size()) != n - 1) {
        throw std::logic_error(std::string(caller) + ": the candidate edges do not span the points");
    }
    return tree;
}

std::vector<MstEdge> minimum_spanning_tree(const KdTree& tree, const std::vector<double>& core, int n_threads,
                                           const std::vector<MstEdge>* initial_forest, const Neighbors* seeds) {
    const int64_t n = tree.size();
    if (static_cast<int64_t>(core.size()) != n) {
        throw std::invalid_argument("minimum_spanning_tree: core has " + std::to_string(core.size()) +
                                    " entries for " + std::to_string(n) + " points");
    }
    UnionFind components(n);
    std::vector<MstEdge> result;
    result.reserve(static_cast<size_t>(n > 0 ? n - 1 : 0));
    if (initial_forest != nullptr) {
        for (const MstEdge& e : *initial_forest) {
            check_edge(e, n, "minimum_spanning_tree: initial_forest");
            if (!components.unite(tree.position(e.u), tree.position(e.v))) {
                throw std::invalid_argument("minimum_spanning_tree: initial_forest has a cycle");
            }
            result.push_back(e);
        }
    }
    std::vector<EdgeKey> found;
    Boruvka boruvka(tree, core, seeds);
    for (int64_t missing = n - 1 - static_cast<int64_t>(result.size()); missing > 0;) {
        const int64_t added = boruvka.round(components, found, n_threads);
        if (added == 0) throw std::logic_error("minimum_spanning_tree: a Boruvka round added no edge");
        missing -= added;
    }
    for (const EdgeKey& e : found) result.push_back(MstEdge{tree.original(e.a), tree.original(e.b), e.w});
    sort_edges(result);
    return result;
}

std::vector<MstEdge> minimum_spanning_tree(const PointsView& points, const std::vector<double>& core, int n_threads,
                                           const std::vector<MstEdge>* initial_forest) {
    check_points(points, "minimum_spanning_tree");
    const KdTree tree(points);
    return minimum_spanning_tree(tree, core, n_threads, initial_forest, nullptr);
}

std::vector<MstEdge> spanning_forest_of_edges(std::vector<MstEdge> edges, int64_t n_points) {
    if (n_points < 0) throw std::invalid_argument("spanning_forest_of_edges: n_points must be >= 0");
    for (const MstEdge& e : edges) check_edge(e, n_points, "spanning_forest_of_edges");
    sort_edges(edges);
    UnionFind components(n_points);
    std::vector<MstEdge> forest;
    for (const MstEdge& e : edges) {
        if (components.unite(e.u, e.v)) forest.push_back(e);
    }
    return forest;
}

}  // namespace medscore
