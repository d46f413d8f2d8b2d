// Single-linkage tree in heavy-first preorder and bottleneck queries (see medscore/dendrogram.hpp).
#include "medscore/dendrogram.hpp"

#include <stdexcept>
#include <utility>

#include "medscore/union_find.hpp"

namespace medscore {

Dendrogram dendrogram_of(const std::vector<MstEdge>& tree, int64_t n) {
    // Merge order first (node n + i joins edge i's components), then the preorder renumbering.
    UnionFind sets(n);
    const int64_t merges = std::max<int64_t>(n - 1, 0);
    std::vector<int64_t> node_of(static_cast<size_t>(n)), kids(static_cast<size_t>(2 * merges));
    std::vector<int64_t> size(static_cast<size_t>(n + merges), 1);  // leaves below each node
    for (int64_t i = 0; i < n; ++i) node_of[i] = i;
    for (int64_t i = 0; i < n - 1; ++i) {
        const int64_t ru = sets.find(tree[i].u), rv = sets.find(tree[i].v);
        if (ru == rv) throw std::logic_error("dendrogram_of: the tree has a cycle");
        int64_t a = node_of[ru], b = node_of[rv];
        if (size[b] > size[a]) std::swap(a, b);  // the larger child first: heavy paths are id runs
        kids[2 * i] = a;
        kids[2 * i + 1] = b;
        size[n + i] = size[a] + size[b];
        sets.unite(ru, rv);
        node_of[sets.find(ru)] = n + i;
    }
    Dendrogram g;
    g.n = n;
    if (n == 0) return g;
    const auto m = static_cast<size_t>(2 * n - 1);
    g.parent.assign(m, -1);
    g.height.assign(m, 0.0);
    g.end.resize(m);
    g.head.resize(m);
    g.leaf_of.resize(static_cast<size_t>(n));
    std::vector<std::pair<int64_t, int64_t>> stack{{2 * n - 2, -1}};  // (merge-order node, parent id)
    for (int64_t id = 0; !stack.empty(); ++id) {
        const auto [x, up] = stack.back();
        stack.pop_back();
        g.parent[id] = up;
        g.head[id] = up >= 0 && id == up + 1 ? g.head[up] : id;  // the first child continues the path
        g.end[id] = id + 2 * size[x] - 1;  // a subtree of L leaves has 2L - 1 nodes
        if (x < n) {
            g.leaf_of[x] = id;
            continue;
        }
        g.height[id] = tree[x - n].weight;
        stack.emplace_back(kids[2 * (x - n) + 1], id);
        stack.emplace_back(kids[2 * (x - n)], id);  // popped first: the larger child gets id + 1
    }
    return g;
}

void AncestorChain::assign(const Dendrogram& g, int64_t point, double lo, double hi) {
    g_ = &g;
    run_top_.clear();
    run_bottom_.clear();
    for (int64_t x = g.leaf_of[point]; x >= 0; x = g.parent[g.head[x]]) {
        run_top_.push_back(g.head[x]);
        run_bottom_.push_back(x);
    }
    edge_.resize(kGrid + 1);
    grid_begin_.resize(kGrid + 1);
    grid_end_.resize(kGrid + 1);
    lo_ = lo;
    hi_ = hi;
    inv_step_ = hi > lo ? static_cast<double>(kGrid) / (hi - lo) : 0.0;
    for (int64_t c = 0; c <= kGrid; ++c) {
        edge_[c] = c == kGrid ? hi : lo + (hi - lo) * static_cast<double>(c) / static_cast<double>(kGrid);
        const int64_t x = highest_below(edge_[c]);
        grid_begin_[c] = x < 0 ? 1 : x;  // (1, 0): holds no leaf
        grid_end_[c] = x < 0 ? 0 : g.end[x];
    }
}

int64_t AncestorChain::highest_below(double e) const noexcept {
    const std::vector<double>& height = g_->height;
    // Heights grow from the leaf's run to the root's, and within a run towards its top.
    int64_t best = -1;
    for (size_t r = 0; r < run_top_.size(); ++r) {
        const int64_t top = run_top_[r], bottom = run_bottom_[r];
        if (height[top] < e) {
            best = top;
            continue;
        }
        if (!(height[bottom] < e)) break;
        int64_t a = top, b = bottom;  // height[a] >= e > height[b]: the smallest id with height < e
        while (b - a > 1) {
            const int64_t mid = a + (b - a) / 2;
            if (height[mid] < e) b = mid; else a = mid;
        }
        return b;
    }
    return best;
}

double AncestorChain::leaf_bottleneck(int64_t leaf) const noexcept {
    const std::vector<int64_t>& end = g_->end;
    for (size_t r = 0; r < run_top_.size(); ++r) {
        const int64_t top = run_top_[r], bottom = run_bottom_[r];
        if (!(top <= leaf && leaf < end[top])) continue;
        // Within a run the subtrees shrink as ids grow: the largest id holding `leaf`.
        int64_t a = top, b = bottom + 1;  // a holds it; b does not (or is past the run)
        while (b - a > 1) {
            const int64_t mid = a + (b - a) / 2;
            if (mid <= leaf && leaf < end[mid]) a = mid; else b = mid;
        }
        return g_->height[a];
    }
    return g_->height[0];  // unreachable: the root's run holds every leaf
}

}  // namespace medscore
