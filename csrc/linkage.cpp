// Stage 3 of docs/SPEC.md: Kruskal over the sorted MST gives the single-linkage tree.
#include "medscore/linkage.hpp"

#include <stdexcept>
#include <string>

#include "medscore/union_find.hpp"

namespace medscore {

std::vector<LinkageRow> single_linkage(const std::vector<MstEdge>& mst, int64_t n_points) {
    LinkageWorkspace work;
    std::vector<LinkageRow> linkage;
    single_linkage(mst, n_points, work, linkage);
    return linkage;
}

void single_linkage(const std::vector<MstEdge>& mst, int64_t n_points, LinkageWorkspace& work,
                    std::vector<LinkageRow>& out) {
    if (n_points < 1) throw std::invalid_argument("single_linkage: n must be >= 1, got " + std::to_string(n_points));
    if (static_cast<int64_t>(mst.size()) != n_points - 1) {
        throw std::invalid_argument("single_linkage: expected " + std::to_string(n_points - 1) +
                                    " MST edges for " + std::to_string(n_points) + " points, got " +
                                    std::to_string(mst.size()));
    }
    const size_t n = static_cast<size_t>(n_points);
    work.set_parent.resize(n);
    work.set_size.assign(n, 1);
    work.node_of_root.resize(n);
    out.resize(mst.size());
    int64_t* parent = work.set_parent.data();
    int64_t* size = work.set_size.data();
    int64_t* node_of_root = work.node_of_root.data();
    for (int64_t v = 0; v < n_points; ++v) {
        parent[v] = v;
        node_of_root[v] = v;
    }
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
        const int64_t ru = find_root(parent, e.u), rv = find_root(parent, e.v);
        if (ru == rv) {
            throw std::invalid_argument("single_linkage: edge " + std::to_string(i) + " closes a cycle; not a tree");
        }
        // A row joins the nodes standing for the two sets, whichever roots the sets have.
        out[i] = LinkageRow{node_of_root[ru], node_of_root[rv], e.weight, size[ru] + size[rv]};
        node_of_root[unite_roots(parent, size, ru, rv)] = n_points + static_cast<int64_t>(i);
    }
}

}  // namespace medscore
