// Stage 4 of docs/SPEC.md: the condensed tree, with chains of equal heights as n-ary merges.
#include "medscore/condense.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace medscore {
namespace {

/// Read access to a single-linkage tree: leaves 0..N-1, internal node N + i is row i.
/// Its queries write into caller-owned buffers, so a reused CondenseWorkspace allocates nothing.
class LinkageTree {
public:
    LinkageTree(const std::vector<LinkageRow>& rows, int64_t n_points, std::vector<int64_t>& min_point)
        : rows_(rows), n_(n_points), min_point_(min_point) {
        min_point_.resize(static_cast<size_t>(2 * n_points - 1));
        for (int64_t p = 0; p < n_; ++p) min_point_[p] = p;
        for (int64_t i = 0; i < n_ - 1; ++i) {
            const LinkageRow& row = rows_[i];
            for (const int64_t child : {row.left, row.right}) {
                if (child < 0 || child >= n_ + i) {
                    throw std::invalid_argument("condense_tree: linkage row " + std::to_string(i) +
                                                " has child " + std::to_string(child) + " outside [0, " +
                                                std::to_string(n_ + i) + ")");
                }
            }
            min_point_[n_ + i] = std::min(min_point_[row.left], min_point_[row.right]);
        }
    }

    bool is_leaf(int64_t x) const noexcept { return x < n_; }
    double height(int64_t x) const noexcept { return rows_[x - n_].distance; }
    int64_t size(int64_t x) const noexcept { return is_leaf(x) ? 1 : rows_[x - n_].size; }
    int64_t root() const noexcept { return 2 * n_ - 2; }

    /// Children of internal node x under the threshold hierarchy, ordered by min point.
    void children(int64_t x, std::vector<int64_t>& found, std::vector<int64_t>& stack) const {
        const double h = height(x);
        found.clear();
        stack.assign({rows_[x - n_].right, rows_[x - n_].left});
        while (!stack.empty()) {
            const int64_t y = stack.back();
            stack.pop_back();
            if (!is_leaf(y) && height(y) == h) {
                stack.push_back(rows_[y - n_].right);
                stack.push_back(rows_[y - n_].left);
            } else {
                found.push_back(y);
            }
        }
        const auto by_min_point = [&](int64_t a, int64_t b) { return min_point_[a] < min_point_[b]; };
        if (found.size() == 2) {  // the common binary merge, without a call to sort
            if (by_min_point(found[1], found[0])) std::swap(found[0], found[1]);
        } else {
            std::sort(found.begin(), found.end(), by_min_point);
        }
    }

    /// The points under node x, ascending.
    void points(int64_t x, std::vector<int64_t>& found, std::vector<int64_t>& stack) const {
        found.clear();
        if (is_leaf(x)) {
            found.push_back(x);
            return;
        }
        stack.assign(1, x);
        while (!stack.empty()) {
            const int64_t y = stack.back();
            stack.pop_back();
            if (is_leaf(y)) {
                found.push_back(y);
            } else {
                stack.push_back(rows_[y - n_].left);
                stack.push_back(rows_[y - n_].right);
            }
        }
        std::sort(found.begin(), found.end());
    }

private:
    const std::vector<LinkageRow>& rows_;
    int64_t n_;
    std::vector<int64_t>& min_point_;
};

double lambda_of(double distance) noexcept {
    return distance > 0.0 ? 1.0 / distance : std::numeric_limits<double>::infinity();
}

void emit_points(const LinkageTree& tree, int64_t node, int64_t label, double lam, CondenseWorkspace& work,
                 std::vector<CondensedRow>& out) {
    tree.points(node, work.points, work.stack);
    for (const int64_t p : work.points) out.push_back(CondensedRow{label, p, lam, 1});
}

}  // namespace

std::vector<CondensedRow> condense_tree(const std::vector<LinkageRow>& linkage, int64_t n_points,
                                        int64_t min_cluster_size) {
    CondenseWorkspace work;
    std::vector<CondensedRow> out;
    condense_tree(linkage, n_points, min_cluster_size, work, out);
    return out;
}

void condense_tree(const std::vector<LinkageRow>& linkage, int64_t n_points, int64_t min_cluster_size,
                   CondenseWorkspace& work, std::vector<CondensedRow>& out) {
    if (n_points < 1) throw std::invalid_argument("condense_tree: n must be >= 1, got " + std::to_string(n_points));
    if (min_cluster_size < 2) {
        throw std::invalid_argument("condense_tree: min_cluster_size must be >= 2, got " +
                                    std::to_string(min_cluster_size));
    }
    if (static_cast<int64_t>(linkage.size()) != n_points - 1) {
        throw std::invalid_argument("condense_tree: expected " + std::to_string(n_points - 1) +
                                    " linkage rows, got " + std::to_string(linkage.size()));
    }
    out.clear();
    if (n_points == 1) return;
    const LinkageTree tree(linkage, n_points, work.min_point);
    int64_t next_label = n_points + 1;
    std::vector<int64_t>& queue = work.queue;  // breadth first: (node, label) pairs
    queue.assign({tree.root(), n_points});
    for (size_t head = 0; head < queue.size(); head += 2) {
        int64_t x = queue[head];
        const int64_t label = queue[head + 1];
        for (;;) {
            const double lam = lambda_of(tree.height(x));
            tree.children(x, work.children, work.stack);
            const std::vector<int64_t>& ch = work.children;
            work.big.clear();
            for (const int64_t y : ch) {
                if (tree.size(y) >= min_cluster_size) work.big.push_back(y);
            }
            if (work.big.size() >= 2) {
                for (const int64_t y : ch) {
                    if (tree.size(y) < min_cluster_size) {
                        emit_points(tree, y, label, lam, work, out);
                        continue;
                    }
                    out.push_back(CondensedRow{label, next_label, lam, tree.size(y)});
                    queue.push_back(y);
                    queue.push_back(next_label++);
                }
                break;
            }
            for (const int64_t y : ch) {
                if (work.big.empty() || y != work.big[0]) emit_points(tree, y, label, lam, work, out);
            }
            if (work.big.empty()) break;
            x = work.big[0];
        }
    }
}

}  // namespace medscore
