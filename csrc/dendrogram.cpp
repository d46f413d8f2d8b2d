// Single-linkage tree in preorder and bottleneck queries (see medscore/dendrogram.hpp).
#include "medscore/dendrogram.hpp"

#include <stdexcept>
#include <utility>

#include "medscore/union_find.hpp"

namespace medscore {

Dendrogram dendrogram_of(const std::vector<MstEdge>& tree, int64_t n) {
    // Merge order first (node n + i joins edge i's components), then the preorder renumbering.
    UnionFind sets(n);
    std::vector<int64_t> node_of(static_cast<size_t>(n)), kids(static_cast<size_t>(2 * std::max<int64_t>(n - 1, 0)));
    for (int64_t i = 0; i < n; ++i) node_of[i] = i;
    for (int64_t i = 0; i < n - 1; ++i) {
        const int64_t ru = sets.find(tree[i].u), rv = sets.find(tree[i].v);
        if (ru == rv) throw std::logic_error("dendrogram_of: the tree has a cycle");
        kids[2 * i] = node_of[ru];
        kids[2 * i + 1] = node_of[rv];
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
    g.leaf_of.resize(static_cast<size_t>(n));
    std::vector<int64_t> right(m, -1);
    std::vector<std::pair<int64_t, int64_t>> stack{{2 * n - 2, -1}};  // (merge-order node, parent id)
    for (int64_t id = 0; !stack.empty(); ++id) {
        const auto [x, up] = stack.back();
        stack.pop_back();
        g.parent[id] = up;
        if (up >= 0 && id != up + 1) right[up] = id;  // the left child is always up + 1
        if (x < n) {
            g.leaf_of[x] = id;
            continue;
        }
        g.height[id] = tree[x - n].weight;
        stack.emplace_back(kids[2 * (x - n) + 1], id);
        stack.emplace_back(kids[2 * (x - n)], id);  // popped first: the left child gets id + 1
    }
    for (auto x = static_cast<int64_t>(m) - 1; x >= 0; --x) {  // children have larger ids
        g.end[x] = right[x] < 0 ? x + 1 : g.end[right[x]];
    }
    return g;
}

void AncestorChain::assign(const Dendrogram& g, int64_t point, double lo, double hi) {
    begin_.clear();
    end_.clear();
    height_.clear();
    for (int64_t x = g.leaf_of[point]; x >= 0; x = g.parent[x]) {
        begin_.push_back(x);
        end_.push_back(g.end[x]);
        height_.push_back(g.height[x]);
    }
    edge_.resize(kGrid + 1);
    grid_begin_.resize(kGrid + 1);
    grid_end_.resize(kGrid + 1);
    lo_ = lo;
    hi_ = hi;
    inv_step_ = hi > lo ? static_cast<double>(kGrid) / (hi - lo) : 0.0;
    size_t below = 0;  // chain entries [0, below) have height < the current edge
    for (int64_t c = 0; c <= kGrid; ++c) {
        edge_[c] = c == kGrid ? hi : lo + (hi - lo) * static_cast<double>(c) / static_cast<double>(kGrid);
        while (below < height_.size() && height_[below] < edge_[c]) ++below;
        grid_begin_[c] = below == 0 ? 1 : begin_[below - 1];  // (1, 0): holds no leaf
        grid_end_[c] = below == 0 ? 0 : end_[below - 1];
    }
}

double AncestorChain::bottleneck(const Dendrogram& g, int64_t point) const noexcept {
    return leaf_bottleneck(g.leaf_of[point]);
}

double AncestorChain::leaf_bottleneck(int64_t leaf) const noexcept {
    // Containment is monotone along the chain: find the first range holding `leaf`.
    size_t lo = 0, hi = begin_.size() - 1;  // the root (last) holds every leaf
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (begin_[mid] <= leaf && leaf < end_[mid]) hi = mid; else lo = mid + 1;
    }
    return height_[lo];
}

}  // namespace medscore
