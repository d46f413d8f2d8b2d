// Exact insertion of new points into a Euclidean minimum spanning tree.
//
// MST(old points + q) is the MST of (old MST + every edge from q), because an old edge that
// is not in the old MST is the heaviest edge of a cycle of old MST edges. That graph is a
// tree plus one vertex joined to everything, and its MST is found in one post-order walk:
// merging a child subtree into its parent closes exactly one cycle through q, and the
// heaviest edge of that cycle leaves (the cycle rule keeps an MST under ties too). Each
// vertex carries the heaviest edge on its path to q in its partial tree. O(n) per point
// after the n distances.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/distance.hpp"
#include "medscore/memory.hpp"
#include "medscore/mst.hpp"

namespace medscore {
namespace {

/// An edge met during the walk: weight and id (id < n: the edge (id, q); id >= n: tree
/// edge id - n). Ties between equal weights are broken by id, which any rule may do.
struct WalkEdge {
    double weight;
    int64_t id;
};

inline bool heavier(const WalkEdge& a, const WalkEdge& b) noexcept {
    return a.weight > b.weight || (a.weight == b.weight && a.id > b.id);
}

/// Tree adjacency in compressed rows: neighbours of v are at start[v] .. start[v+1]-1.
struct Adjacency {
    std::vector<int64_t> start, vertex, edge;
};

Adjacency build_adjacency(const std::vector<MstEdge>& tree, int64_t n) {
    Adjacency adj;
    adj.start.assign(static_cast<size_t>(n + 1), 0);
    for (const MstEdge& e : tree) { ++adj.start[e.u + 1]; ++adj.start[e.v + 1]; }
    for (int64_t v = 0; v < n; ++v) adj.start[v + 1] += adj.start[v];
    adj.vertex.resize(2 * tree.size());
    adj.edge.resize(2 * tree.size());
    std::vector<int64_t> fill(adj.start.begin(), adj.start.end() - 1);
    for (size_t i = 0; i < tree.size(); ++i) {
        const MstEdge& e = tree[i];
        adj.vertex[fill[e.u]] = e.v; adj.edge[fill[e.u]++] = static_cast<int64_t>(i);
        adj.vertex[fill[e.v]] = e.u; adj.edge[fill[e.v]++] = static_cast<int64_t>(i);
    }
    return adj;
}

/// Preorder of the tree from vertex 0, with each vertex's parent edge (-1 at the root).
void preorder(const Adjacency& adj, int64_t n, std::vector<int64_t>& order, std::vector<int64_t>& parent,
              std::vector<int64_t>& parent_edge) {
    order.clear();
    parent.assign(static_cast<size_t>(n), -1);
    parent_edge.assign(static_cast<size_t>(n), -1);
    std::vector<int64_t> stack{0};
    std::vector<char> seen(static_cast<size_t>(n), 0);
    seen[0] = 1;
    while (!stack.empty()) {
        const int64_t v = stack.back();
        stack.pop_back();
        order.push_back(v);
        for (int64_t a = adj.start[v]; a < adj.start[v + 1]; ++a) {
            const int64_t w = adj.vertex[a];
            if (seen[w]) continue;
            seen[w] = 1;
            parent[w] = v;
            parent_edge[w] = adj.edge[a];
            stack.push_back(w);
        }
    }
    if (static_cast<int64_t>(order.size()) != n) throw std::logic_error("insert_into_mst: the MST is not connected");
}

/// Inserts vertex q = n (distances `to_q` [n] to vertices 0..n-1) into `tree` (n - 1 edges).
void insert_vertex(std::vector<MstEdge>& tree, int64_t n, const std::vector<double>& to_q) {
    const Adjacency adj = build_adjacency(tree, n);
    std::vector<int64_t> order, parent, parent_edge;
    preorder(adj, n, order, parent, parent_edge);
    std::vector<WalkEdge> path_max(static_cast<size_t>(n));
    for (int64_t v = 0; v < n; ++v) path_max[v] = WalkEdge{to_q[v], v};
    std::vector<char> dropped(static_cast<size_t>(2 * n), 0);  // q-edges, then tree edges
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        const int64_t v = *it;
        const int64_t p = parent[v];
        if (p < 0) continue;
        const WalkEdge via_tree{tree[parent_edge[v]].weight, n + parent_edge[v]};
        const WalkEdge from_child = path_max[v];
        const WalkEdge from_parent = path_max[p];
        if (heavier(via_tree, from_child) && heavier(via_tree, from_parent)) {
            dropped[via_tree.id] = 1;
        } else if (heavier(from_child, from_parent)) {
            dropped[from_child.id] = 1;
        } else {
            dropped[from_parent.id] = 1;
            path_max[p] = heavier(from_child, via_tree) ? from_child : via_tree;
        }
    }
    std::vector<MstEdge> next;
    next.reserve(static_cast<size_t>(n));
    for (int64_t e = 0; e < n - 1; ++e) {
        if (!dropped[n + e]) next.push_back(tree[e]);
    }
    for (int64_t j = 0; j < n; ++j) {
        if (!dropped[j]) next.push_back(MstEdge{j, n, to_q[j]});
    }
    if (static_cast<int64_t>(next.size()) != n) throw std::logic_error("insert_into_mst: walk lost the tree");
    tree.swap(next);
}

bool edge_less(const MstEdge& a, const MstEdge& b) noexcept {
    if (a.weight != b.weight) return a.weight < b.weight;
    if (a.u != b.u) return a.u < b.u;
    return a.v < b.v;
}

}  // namespace

std::vector<MstEdge> insert_into_mst(const std::vector<MstEdge>& mst, const PointsView& points,
                                     int64_t n_old) {
    if (n_old < 1 || points.rows < n_old || static_cast<int64_t>(mst.size()) != n_old - 1) {
        throw std::invalid_argument("insert_into_mst: expected an MST of n_old - 1 edges over n_old >= 1 of the " +
                                    std::to_string(points.rows) + " points");
    }
    std::vector<MstEdge> tree = mst;
    std::vector<double> to_q;
    for (int64_t q = n_old; q < points.rows; ++q) {
        to_q.resize(static_cast<size_t>(q));
        for (int64_t j = 0; j < q; ++j) to_q[j] = euclidean_distance(points.row(j), points.row(q), points.cols);
        insert_vertex(tree, q, to_q);
    }
    // insert_vertex keeps surviving edges in their order, so the old edges are still sorted;
    // only the new ones need sorting before the merge.
    std::vector<MstEdge> kept, added;
    kept.reserve(tree.size());
    for (const MstEdge& e : tree) (e.v < n_old ? kept : added).push_back(e);
    std::sort(added.begin(), added.end(), edge_less);
    std::vector<MstEdge> out(tree.size());
    std::merge(kept.begin(), kept.end(), added.begin(), added.end(), out.begin(), edge_less);
    return out;
}

}  // namespace medscore
