// kd-tree construction and exact lower bounds; see medscore/kdtree.hpp.
#include "medscore/kdtree.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "medscore/projection.hpp"
#include "medscore/thread_pool.hpp"

namespace medscore {
namespace {

/// Nodes of the tree over m points: the split is always at the middle, so this depends on m only.
int64_t node_count(int64_t m, int64_t leaf_size) {
    return m <= leaf_size ? 1 : 1 + node_count(m / 2, leaf_size) + node_count(m - m / 2, leaf_size);
}

/// Subtrees above this many points are built on two threads.
constexpr int64_t kParallelBuildRows = 16384;

}  // namespace

KdTree::KdTree(const PointsView& points, int64_t leaf_size) : n_(points.rows), d_(points.cols) {
    check_points(points, "KdTree");
    if (leaf_size < 1 || leaf_size > kLeafSize) throw std::invalid_argument("KdTree: leaf_size must be in [1, 32]");
    projected_ = d_ > kProjectAbove;
    e_ = projected_ ? kProjectAbove : d_;
    coords_.resize(static_cast<size_t>(n_ * e_));
    if (projected_) {
        projection_ = principal_projection(points, e_);
        const Projection& projection = projection_;
        parallel_for(n_, 0, 4096, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) projection.apply(points.row(i), coords_.data() + i * e_);
        });
        coordinate_slack_ = 2.0 * projection.coordinate_error;
        // Rounding of the bound itself (e_ terms) and of the bit-defined distance (d_ terms).
        const double margin = 8.0 * static_cast<double>(d_ + e_ + 8) * std::numeric_limits<double>::epsilon();
        bound_scale_ = (1.0 - margin) / projection.stretch;
    } else {
        std::copy(points.data, points.data + n_ * d_, coords_.begin());
    }
    index_.resize(static_cast<size_t>(n_));
    std::iota(index_.begin(), index_.end(), int64_t{0});
    const int64_t count = node_count(n_, leaf_size);
    nodes_.resize(static_cast<size_t>(count));
    lower_.assign(static_cast<size_t>(count * e_), std::numeric_limits<double>::infinity());
    upper_.assign(static_cast<size_t>(count * e_), -std::numeric_limits<double>::infinity());
    // coords_ follows index_ through the build (rows move with their points), so every node
    // reads its points' coordinates contiguously.
    scratch_.resize(coords_.size());
    build(0, 0, n_, leaf_size, 1);
    std::vector<double>().swap(scratch_);
    points_.resize(static_cast<size_t>(n_ * d_));
    position_.resize(static_cast<size_t>(n_));
    parallel_for(n_, 0, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t pos = begin; pos < end; ++pos) {
            const int64_t row = index_[pos];
            std::copy(points.row(row), points.row(row) + d_, points_.begin() + pos * d_);
            position_[row] = pos;
        }
    });
}

void KdTree::build(int32_t id, int64_t start, int64_t end, int64_t leaf_size, int parallel_levels) {
    nodes_[id] = KdNode{start, end, -1, -1};
    double* lo = lower_.data() + static_cast<int64_t>(id) * e_;
    double* hi = upper_.data() + static_cast<int64_t>(id) * e_;
    for (int64_t i = start; i < end; ++i) {
        const double* p = coords_.data() + i * e_;
        for (int64_t k = 0; k < e_; ++k) {
            lo[k] = std::min(lo[k], p[k]);
            hi[k] = std::max(hi[k], p[k]);
        }
    }
    if (end - start <= leaf_size) return;
    int64_t split = 0;
    for (int64_t k = 1; k < e_; ++k) {
        if (hi[k] - lo[k] > hi[split] - lo[split]) split = k;
    }
    // Equal points are still split (by row) so that leaves never exceed kLeafSize.
    const int64_t mid = start + (end - start) / 2;
    // Ties on the coordinate are ordered by row so that the tree is deterministic.
    struct Key {
        double value;
        int64_t row;
        int64_t at;
    };
    std::vector<Key> keys(static_cast<size_t>(end - start));
    for (int64_t i = start; i < end; ++i) keys[i - start] = Key{coords_[i * e_ + split], index_[i], i};
    std::nth_element(keys.begin(), keys.begin() + (mid - start), keys.end(), [](const Key& a, const Key& b) {
        return a.value < b.value || (a.value == b.value && a.row < b.row);
    });
    for (int64_t i = start; i < end; ++i) {
        const Key& key = keys[i - start];
        index_[i] = key.row;
        std::copy(coords_.begin() + key.at * e_, coords_.begin() + (key.at + 1) * e_, scratch_.begin() + i * e_);
    }
    std::copy(scratch_.begin() + start * e_, scratch_.begin() + end * e_, coords_.begin() + start * e_);
    // Preorder ids: the left subtree follows its parent, the right one follows the left.
    const auto left = static_cast<int32_t>(id + 1);
    const auto right = static_cast<int32_t>(id + 1 + node_count(mid - start, leaf_size));
    nodes_[id].left = left;
    nodes_[id].right = right;
    if (parallel_levels > 0 && end - start > kParallelBuildRows && resolve_threads(0) > 1) {
        // Disjoint ranges of index_ and disjoint node ids: the tree is the same as built serially.
        std::thread other([&] { build(right, mid, end, leaf_size, parallel_levels - 1); });
        build(left, start, mid, leaf_size, parallel_levels - 1);
        other.join();
    } else {
        build(left, start, mid, leaf_size, 0);
        build(right, mid, end, leaf_size, 0);
    }
}

bool KdTree::insert(const PointsView& points) {
    if (points.cols != d_ || points.rows < n_) {
        throw std::invalid_argument("KdTree::insert: expected the tree's rows followed by new rows");
    }
    const int64_t n_new = points.rows - n_;
    if (n_new == 0) return true;
    std::vector<double> coords(static_cast<size_t>(n_new * e_));
    double max_norm = projection_.max_norm;
    for (int64_t i = 0; i < n_new; ++i) {
        const double* x = points.row(n_ + i);
        if (projected_) {
            projection_.apply(x, coords.data() + i * e_);
            max_norm = std::max(max_norm, projection_.error_norm(x));
        } else {
            std::copy(x, x + d_, coords.begin() + i * e_);
        }
    }
    // Each new row descends to the child whose box is nearer (squared gap in tree coordinates).
    auto gap = [&](int32_t node, const double* c) {
        const double* lo = lower_.data() + static_cast<int64_t>(node) * e_;
        const double* hi = upper_.data() + static_cast<int64_t>(node) * e_;
        double sum = 0.0;
        for (int64_t k = 0; k < e_; ++k) {
            const double t = std::max({lo[k] - c[k], c[k] - hi[k], 0.0});
            sum += t * t;
        }
        return sum;
    };
    std::vector<int32_t> leaf_of(static_cast<size_t>(n_new));
    std::vector<int64_t> added(nodes_.size(), 0);
    std::vector<int32_t> path;  // the nodes each new row passes, root to leaf, row after row
    std::vector<size_t> path_start(static_cast<size_t>(n_new) + 1, 0);
    for (int64_t i = 0; i < n_new; ++i) {
        const double* c = coords.data() + i * e_;
        int32_t node = 0;
        path.push_back(node);
        while (nodes_[node].left >= 0) {
            const KdNode& nd = nodes_[node];
            node = gap(nd.right, c) < gap(nd.left, c) ? nd.right : nd.left;
            path.push_back(node);
        }
        path_start[i + 1] = path.size();
        leaf_of[i] = node;
        if (nodes_[node].end - nodes_[node].start + ++added[node] > kLeafSize) return false;
    }
    // New tree order: each leaf's old positions, then its new rows (in row order). Every
    // allocation comes first (vector::resize changes nothing when it throws); the rest moves
    // data within the grown arrays and cannot fail.
    const int64_t n = points.rows;
    // (leaf, row) of each new row, by leaf then row: leaf ids ascend with positions (preorder).
    std::vector<std::pair<int32_t, int64_t>> joins(static_cast<size_t>(n_new));
    for (int64_t i = 0; i < n_new; ++i) joins[i] = {leaf_of[i], n_ + i};
    std::sort(joins.begin(), joins.end());
    std::vector<int32_t> leaves;
    for (size_t id = 0; id < nodes_.size(); ++id) {
        if (nodes_[id].left < 0) leaves.push_back(static_cast<int32_t>(id));
    }
    index_.reserve(static_cast<size_t>(n));
    position_.reserve(static_cast<size_t>(n));
    points_.reserve(static_cast<size_t>(n * d_));
    coords_.reserve(static_cast<size_t>(n * e_));
    index_.resize(static_cast<size_t>(n));
    position_.resize(static_cast<size_t>(n));
    points_.resize(static_cast<size_t>(n * d_));
    coords_.resize(static_cast<size_t>(n * e_));
    // From the last leaf back, each leaf's block moves right by the rows added before it.
    int64_t shift = n_new;
    auto join = joins.size();  // joins[join, ...) are placed
    for (size_t l = leaves.size(); l-- > 0 && shift > 0;) {
        KdNode& nd = nodes_[leaves[l]];
        auto first = join;
        while (first > 0 && joins[first - 1].first == leaves[l]) --first;
        const auto count = static_cast<int64_t>(join - first);
        const int64_t new_end = nd.end + shift;
        for (int64_t j = 0; j < count; ++j) {  // the new rows at the block's end
            const int64_t at = new_end - count + j, row = joins[first + j].second;
            index_[at] = row;
            std::copy(points.row(row), points.row(row) + d_, points_.begin() + at * d_);
            std::copy(coords.begin() + (row - n_) * e_, coords.begin() + (row - n_ + 1) * e_,
                      coords_.begin() + at * e_);
        }
        join = first;
        shift -= count;
        if (shift > 0) {
            std::copy_backward(index_.begin() + nd.start, index_.begin() + nd.end, index_.begin() + nd.end + shift);
            std::copy_backward(points_.begin() + nd.start * d_, points_.begin() + nd.end * d_,
                               points_.begin() + (nd.end + shift) * d_);
            std::copy_backward(coords_.begin() + nd.start * e_, coords_.begin() + nd.end * e_,
                               coords_.begin() + (nd.end + shift) * e_);
        }
        nd.start += shift;
        nd.end = new_end;
    }
    for (size_t id = nodes_.size(); id-- > 0;) {  // children have larger ids
        KdNode& nd = nodes_[id];
        if (nd.left < 0) continue;
        nd.start = nodes_[nd.left].start;
        nd.end = nodes_[nd.right].end;
    }
    for (int64_t pos = 0; pos < n; ++pos) position_[index_[pos]] = pos;
    for (int64_t i = 0; i < n_new; ++i) {  // grow the boxes along each new row's path
        const double* c = coords.data() + i * e_;
        for (size_t at = path_start[i]; at < path_start[i + 1]; ++at) {
            double* lo = lower_.data() + static_cast<int64_t>(path[at]) * e_;
            double* hi = upper_.data() + static_cast<int64_t>(path[at]) * e_;
            for (int64_t k = 0; k < e_; ++k) {
                lo[k] = std::min(lo[k], c[k]);
                hi[k] = std::max(hi[k], c[k]);
            }
        }
    }
    n_ = n;
    if (projected_) {
        projection_.max_norm = max_norm;
        projection_.coordinate_error = projection_.coordinate_error_for(max_norm);
        coordinate_slack_ = 2.0 * projection_.coordinate_error;
    }
    return true;
}

double KdTree::lower_bound(int64_t pos, int32_t node, double bound) const noexcept {
    constexpr double kInf = std::numeric_limits<double>::infinity();
    if (!projected_) {
        const double threshold = squared_prune_threshold(bound);
        const double box = exact_box_squared(point(pos), node, threshold);
        return box > threshold ? kInf : std::sqrt(box);
    }
    const double* q = coords_.data() + pos * e_;
    const double* lo = lower_.data() + static_cast<int64_t>(node) * e_;
    const double* hi = upper_.data() + static_cast<int64_t>(node) * e_;
    double sum = 0.0;
    for (int64_t k = 0; k < e_; ++k) {
        const double gap = std::max({lo[k] - q[k], q[k] - hi[k], 0.0});
        const double t = std::max(gap - coordinate_slack_, 0.0);
        sum += t * t;
    }
    const double lower = std::sqrt(sum) * bound_scale_;
    return lower > bound ? kInf : lower;
}

double KdTree::exact_box_squared(const double* q, int32_t node, double stop_above) const noexcept {
    const double* lo = lower_.data() + static_cast<int64_t>(node) * e_;
    const double* hi = upper_.data() + static_cast<int64_t>(node) * e_;
    // Each term is a lower bound of the matching term of squared_distance(q, p) for p in the
    // box (q below: lo - q <= p - q; above: q - hi <= q - p), and it is summed in the same
    // lane order, so by monotone rounding the sum never exceeds the bit-defined value.
    auto gap = [&](int64_t k) {
        const double below = lo[k] - q[k], above = q[k] - hi[k];
        return below > 0.0 ? below : (above > 0.0 ? above : 0.0);
    };
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t k = 0;
    for (; k + 4 <= e_; k += 4) {
        for (int j = 0; j < 4; ++j) {
            const double t = gap(k + j);
            lanes[j] += t * t;
        }
        if ((k & 15) == 12) {
            const double partial = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
            if (partial > stop_above) return partial;
        }
    }
    for (int j = 0; k < e_; ++k, ++j) {
        const double t = gap(k);
        lanes[j] += t * t;
    }
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

void KdTree::assign_block(const int64_t* positions, int64_t count, QueryBlock& block) const {
    if (count > kBlock) throw std::invalid_argument("KdTree::assign_block: more than kBlock queries");
    block.count = count;
    block.coords.assign(static_cast<size_t>(e_ * kBlock), 0.0);
    for (int64_t j = 0; j < count; ++j) {
        const double* q = coords_.data() + positions[j] * e_;
        for (int64_t k = 0; k < e_; ++k) block.coords[k * kBlock + j] = q[k];
    }
}

// Wider vectors where the CPU has them (per-element IEEE operations: the same values).
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) && !defined(__clang__))
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void KdTree::lower_bounds(const QueryBlock& block, int32_t node, double* out) const noexcept {
    const double* lo = lower_.data() + static_cast<int64_t>(node) * e_;
    const double* hi = upper_.data() + static_cast<int64_t>(node) * e_;
    const double* c = block.coords.data();
    // The loops over the queries (innermost) are independent and vectorise; each query's sum
    // runs in the order of lower_bound(), so every bound equals its value there.
    if (projected_) {
        double sum[kBlock] = {};
        for (int64_t k = 0; k < e_; ++k) {
            const double* q = c + k * kBlock;
            for (int64_t j = 0; j < kBlock; ++j) {
                const double gap = std::max(std::max(lo[k] - q[j], q[j] - hi[k]), 0.0);
                const double t = std::max(gap - coordinate_slack_, 0.0);
                sum[j] += t * t;
            }
        }
        for (int64_t j = 0; j < block.count; ++j) out[j] = std::sqrt(sum[j]) * bound_scale_;
        return;
    }
    double lanes[4][kBlock] = {};
    int64_t k = 0;
    for (; k + 4 <= e_; k += 4) {
        for (int lane = 0; lane < 4; ++lane) {
            const double* q = c + (k + lane) * kBlock;
            for (int64_t j = 0; j < kBlock; ++j) {
                const double t = std::max(std::max(lo[k + lane] - q[j], q[j] - hi[k + lane]), 0.0);
                lanes[lane][j] += t * t;
            }
        }
    }
    for (int lane = 0; k < e_; ++k, ++lane) {
        const double* q = c + k * kBlock;
        for (int64_t j = 0; j < kBlock; ++j) {
            const double t = std::max(std::max(lo[k] - q[j], q[j] - hi[k]), 0.0);
            lanes[lane][j] += t * t;
        }
    }
    for (int64_t j = 0; j < block.count; ++j) {
        out[j] = std::sqrt((lanes[0][j] + lanes[1][j]) + (lanes[2][j] + lanes[3][j]));
    }
}

}  // namespace medscore
