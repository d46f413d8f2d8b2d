// Stage 3 of docs/SPEC.md: Kruskal over the sorted MST gives the single-linkage tree.
#include "medscore/linkage.hpp"

#include <stdexcept>
#include <string>

#include "medscore/union_find.hpp"

namespace medscore {

std::vector<LinkageRow> single_linkage(const std::vector<MstEdge>& mst, int64_t n_points) {
    if (n_points < 1) throw std::invalid_argument("single_linkage: n must be >= 1, got " + std::to_string(n_points));
    if (static_cast<int64_t>(mst.size()) != n_points - 1) {
        throw std::invalid_argument("single_linkage: expected " + std::to_string(n_points - 1) +
                                    " MST edges for " + std::to_string(n_points) + " points, got " +
                                    std::to_string(mst.size()));
    }
    UnionFind components(n_points);
    // node_of_root[r]: the linkage node that currently stands for the set with root r.
    std::vector<int64_t> node_of_root(static_cast<size_t>(n_points));
    for (int64_t i = 0; i < n_points; ++i) node_of_root[i] = i;
    std::vector<LinkageRow> linkage;
    linkage.reserve(mst.size());
    for (size_t i = 0; i < mst.size(); ++i) {
        const MstEdge& e = mst[i];
        if (e.u < 0 || e.v < 0 || e.u >= n_points || e.v >= n_points) {
            throw std::invalid_argument("single_linkage: edge " + std::to_string(i) + " has a vertex outside [0, " +
                                        std::to_string(n_points) + ")");
        }
        if (i > 0 && e.weight < mst[i - 1].weight) {
            throw std::invalid_argument("single_linkage: MST edges are not sorted by weight (edge " +
                                        std::to_string(i) + ")");
        }
        const int64_t ru = components.find(e.u), rv = components.find(e.v);
        if (ru == rv) {
            throw std::invalid_argument("single_linkage: edge " + std::to_string(i) + " closes a cycle; not a tree");
        }
        const int64_t size = components.size_of(ru) + components.size_of(rv);
        linkage.push_back(LinkageRow{node_of_root[ru], node_of_root[rv], e.weight, size});
        components.unite(ru, rv);
        node_of_root[components.find(ru)] = n_points + static_cast<int64_t>(i);
    }
    return linkage;
}

}  // namespace medscore
