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

/// Buffers reused by every insertion of one insert_into_mst call (sized for the largest tree).
struct Workspace {
    std::vector<int64_t> start, fill, vertex, edge;  // adjacency in compressed rows
    std::vector<int64_t> order, parent, parent_edge, stack;
    std::vector<WalkEdge> path_max;
    std::vector<char> dropped;
    std::vector<MstEdge> next;
};

void build_adjacency(const std::vector<MstEdge>& tree, int64_t n, Workspace& w) {
    w.start.assign(static_cast<size_t>(n + 1), 0);
    for (const MstEdge& e : tree) { ++w.start[e.u + 1]; ++w.start[e.v + 1]; }
    for (int64_t v = 0; v < n; ++v) w.start[v + 1] += w.start[v];
    w.vertex.resize(2 * tree.size());
    w.edge.resize(2 * tree.size());
    w.fill.assign(w.start.begin(), w.start.end() - 1);
    for (size_t i = 0; i < tree.size(); ++i) {
        const MstEdge& e = tree[i];
        w.vertex[w.fill[e.u]] = e.v; w.edge[w.fill[e.u]++] = static_cast<int64_t>(i);
        w.vertex[w.fill[e.v]] = e.u; w.edge[w.fill[e.v]++] = static_cast<int64_t>(i);
    }
}

/// Preorder of the tree from vertex 0, with each vertex's parent and parent edge (-1 at the root).
void preorder(int64_t n, Workspace& w) {
    w.order.clear();
    w.parent.assign(static_cast<size_t>(n), -1);
    w.parent_edge.assign(static_cast<size_t>(n), -1);
    w.stack.assign(1, 0);
    w.parent[0] = 0;  // marks the root as seen; reset below
    while (!w.stack.empty()) {
        const int64_t v = w.stack.back();
        w.stack.pop_back();
        w.order.push_back(v);
        for (int64_t a = w.start[v]; a < w.start[v + 1]; ++a) {
            const int64_t x = w.vertex[a];
            if (w.parent[x] >= 0) continue;
            w.parent[x] = v;
            w.parent_edge[x] = w.edge[a];
            w.stack.push_back(x);
        }
    }
    w.parent[0] = -1;
    if (static_cast<int64_t>(w.order.size()) != n) throw std::logic_error("insert_into_mst: the MST is not connected");
}

/// Inserts vertex q = n (distances `to_q` [n] to vertices 0..n-1) into `tree` (n - 1 edges).
void insert_vertex(std::vector<MstEdge>& tree, int64_t n, const std::vector<double>& to_q, Workspace& w) {
    build_adjacency(tree, n, w);
    preorder(n, w);
    w.path_max.resize(static_cast<size_t>(n));
    for (int64_t v = 0; v < n; ++v) w.path_max[v] = WalkEdge{to_q[v], v};
    w.dropped.assign(static_cast<size_t>(2 * n), 0);  // q-edges, then tree edges
    for (auto it = w.order.rbegin(); it != w.order.rend(); ++it) {
        const int64_t v = *it;
        const int64_t p = w.parent[v];
        if (p < 0) continue;
        const WalkEdge via_tree{tree[w.parent_edge[v]].weight, n + w.parent_edge[v]};
        const WalkEdge from_child = w.path_max[v];
        const WalkEdge from_parent = w.path_max[p];
        if (heavier(via_tree, from_child) && heavier(via_tree, from_parent)) {
            w.dropped[via_tree.id] = 1;
        } else if (heavier(from_child, from_parent)) {
            w.dropped[from_child.id] = 1;
        } else {
            w.dropped[from_parent.id] = 1;
            w.path_max[p] = heavier(from_child, via_tree) ? from_child : via_tree;
        }
    }
    w.next.clear();
    for (int64_t e = 0; e < n - 1; ++e) {
        if (!w.dropped[n + e]) w.next.push_back(tree[e]);
    }
    for (int64_t j = 0; j < n; ++j) {
        if (!w.dropped[j]) w.next.push_back(MstEdge{j, n, to_q[j]});
    }
    if (static_cast<int64_t>(w.next.size()) != n) throw std::logic_error("insert_into_mst: walk lost the tree");
    tree.swap(w.next);
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
    Workspace work;
    const auto largest = static_cast<size_t>(points.rows);
    tree.reserve(largest);
    work.next.reserve(largest);
    std::vector<double> to_q;
    to_q.reserve(largest);
    for (int64_t q = n_old; q < points.rows; ++q) {
        to_q.resize(static_cast<size_t>(q));
        for (int64_t j = 0; j < q; ++j) to_q[j] = euclidean_distance(points.row(j), points.row(q), points.cols);
        insert_vertex(tree, q, to_q, work);
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
