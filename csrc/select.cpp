// Stage 5 of docs/SPEC.md: stabilities, EOM / leaf selection, epsilon search, labels,
// probabilities and persistence. Every sum is taken in ascending order of its terms so the
// result does not depend on the order of the rows.
#include "medscore/select.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "medscore/eom_labels.hpp"
#include "medscore/ordered_sum.hpp"

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The clusters of a condensed tree, indexed by id - N (the root is index 0), stored in the
/// buffers of a SelectWorkspace: parent (-1 for the root), birth, death (max lambda of the
/// rows under each cluster), stability, kids (child clusters, ascending, in compressed rows
/// kid_start), size (hdbscan's cluster_sizes: the child_size of a cluster's row; for the root
/// the sum over its child clusters), and for each point the cluster of its row and its lambda.
struct ClusterTree {
    int64_t n_points = 0;
    int64_t n_clusters = 0;
    SelectWorkspace& w;
    double root_eps = 0.0;  ///< hdbscan's node_eps of the root: max over all rows of 1 / lambda

    int64_t size() const noexcept { return n_clusters; }
    double eps_of(int64_t c) const noexcept { return w.birth[c] != 0.0 ? 1.0 / w.birth[c] : kInf; }
    const int64_t* kids_begin(int64_t c) const noexcept { return w.kids.data() + w.kid_start[c]; }
    const int64_t* kids_end(int64_t c) const noexcept { return w.kids.data() + w.kid_start[c + 1]; }
};

int64_t cluster_count(const std::vector<CondensedRow>& rows, int64_t n) {
    int64_t top = n;
    for (size_t i = 0; i < rows.size(); ++i) {
        const CondensedRow& r = rows[i];
        if (r.parent < n || r.child < 0 || (r.child >= n && r.child <= r.parent)) {
            throw std::invalid_argument("select_clusters: condensed row " + std::to_string(i) +
                                        " is not (cluster >= N, point or later cluster)");
        }
        top = std::max({top, r.parent, r.child});
    }
    return top - n + 1;
}

/// Turns per-cluster counts in start[1..k] into compressed-row offsets; fill = row starts.
void offsets_from_counts(std::vector<int64_t>& start, std::vector<int64_t>& fill, int64_t k) {
    for (int64_t c = 0; c < k; ++c) start[c + 1] += start[c];
    fill.assign(start.begin(), start.end() - 1);
}

void build_cluster_tree(const std::vector<CondensedRow>& rows, ClusterTree& ct) {
    SelectWorkspace& w = ct.w;
    const int64_t n = ct.n_points, k = ct.n_clusters;
    w.parent.assign(k, -1);
    w.birth.assign(k, 0.0);
    w.death.assign(k, -kInf);
    w.kid_start.assign(k + 1, 0);
    w.term_start.assign(k + 1, 0);
    w.point_cluster.assign(n, -1);
    w.point_lambda.assign(n, 0.0);
    w.size.assign(k, 0);
    ct.root_eps = -kInf;
    for (const CondensedRow& r : rows) {
        const int64_t p = r.parent - n;
        w.death[p] = std::max(w.death[p], r.lambda_val);
        ct.root_eps = std::max(ct.root_eps, r.lambda_val != 0.0 ? 1.0 / r.lambda_val : kInf);
        ++w.term_start[p + 1];
        if (r.child >= n) {
            w.parent[r.child - n] = p;
            w.birth[r.child - n] = r.lambda_val;
            w.size[r.child - n] = r.child_size;
            if (p == 0) w.size[0] += r.child_size;
            ++w.kid_start[p + 1];
        } else {
            w.point_cluster[r.child] = p;
            w.point_lambda[r.child] = r.lambda_val;
        }
    }
    offsets_from_counts(w.kid_start, w.fill, k);
    w.kids.resize(static_cast<size_t>(w.kid_start[k]));
    for (const CondensedRow& r : rows) {
        if (r.child >= n) w.kids[w.fill[r.parent - n]++] = r.child - n;
    }
    offsets_from_counts(w.term_start, w.fill, k);
    w.terms.resize(rows.size());
    for (const CondensedRow& r : rows) {
        const int64_t p = r.parent - n;
        w.terms[w.fill[p]++] = (r.lambda_val - w.birth[p]) * static_cast<double>(r.child_size);
    }
    w.stability.resize(k);
    for (int64_t c = 0; c < k; ++c) {
        std::sort(w.kids.begin() + w.kid_start[c], w.kids.begin() + w.kid_start[c + 1]);
        w.stability[c] = ordered_sum(w.terms.data() + w.term_start[c], w.terms.data() + w.term_start[c + 1]);
    }
    for (int64_t p = 0; p < n; ++p) {
        if (w.point_cluster[p] < 0) {
            throw std::invalid_argument("select_clusters: point " + std::to_string(p) + " has no condensed row");
        }
    }
}

/// out[c] = marked[c] && no ancestor marked: the clusters an ancestor's selection leaves alone.
void drop_covered(const ClusterTree& ct, const std::vector<char>& marked, std::vector<char>& out) {
    std::vector<char>& covered = ct.w.covered;
    covered.assign(ct.size(), 0);
    out.assign(ct.size(), 0);
    for (int64_t c = 0; c < ct.size(); ++c) {  // parents have smaller ids than children
        const int64_t p = ct.w.parent[c];
        covered[c] = p >= 0 && (marked[p] || covered[p]);
        out[c] = marked[c] && !covered[c];
    }
}

/// The epsilon search over the clusters `in`, written to `out` (a different buffer).
void epsilon_search(const ClusterTree& ct, const std::vector<char>& in, bool allow_single_cluster, double epsilon,
                    std::vector<char>& out) {
    std::vector<char>& walked = ct.w.walked;
    out.assign(ct.size(), 0);
    walked.assign(ct.size(), 0);
    for (int64_t s = 0; s < ct.size(); ++s) {
        if (!in[s]) continue;
        if (ct.eps_of(s) >= epsilon) {
            out[s] = 1;
            continue;
        }
        for (int64_t x = s;;) {
            const int64_t p = ct.w.parent[x];
            if (p == 0) {
                walked[allow_single_cluster ? 0 : x] = 1;
                break;
            }
            if (ct.eps_of(p) > epsilon) {
                walked[p] = 1;
                break;
            }
            x = p;
        }
    }
    drop_covered(ct, walked, ct.w.top);
    for (int64_t c = 0; c < ct.size(); ++c) out[c] = out[c] || ct.w.top[c];
}

/// EOM selection into w.selected (stabilities of w.stability are raised to their subtrees').
/// A candidate larger than max_cluster_size (0: no limit) or born above epsilon_max is not
/// selected either, its stability replaced by its children's (hdbscan's get_clusters).
void select_eom(ClusterTree& ct, const SelectOptions& o) {
    SelectWorkspace& w = ct.w;
    const bool allow_single_cluster = o.allow_single_cluster;
    const double epsilon = o.epsilon;
    const int64_t max_size = o.max_cluster_size > 0 ? o.max_cluster_size : ct.n_points + 1;
    w.marked.assign(ct.size(), 0);
    for (int64_t c = ct.size() - 1; c >= (allow_single_cluster ? 0 : 1); --c) {
        w.sub_terms.clear();
        for (const int64_t* kid = ct.kids_begin(c); kid != ct.kids_end(c); ++kid) w.sub_terms.push_back(w.stability[*kid]);
        const double sub = ordered_sum(w.sub_terms.data(), w.sub_terms.data() + w.sub_terms.size());
        const double node_eps = c == 0 ? ct.root_eps : ct.eps_of(c);
        if (sub > w.stability[c] || w.size[c] > max_size || node_eps > o.epsilon_max) {
            w.stability[c] = sub;
        } else {
            w.marked[c] = 1;
        }
    }
    drop_covered(ct, w.marked, w.selected);
    if (epsilon != 0.0 && ct.size() > 1) {
        const bool only_root = w.selected[0] && std::count(w.selected.begin(), w.selected.end(), 1) == 1;
        if (only_root) {
            if (!allow_single_cluster) w.selected.assign(ct.size(), 0);
            return;
        }
        w.marked = w.selected;
        epsilon_search(ct, w.marked, allow_single_cluster, epsilon, w.selected);
    }
}

/// Leaf selection into w.selected.
void select_leaf(const ClusterTree& ct, bool allow_single_cluster, double epsilon) {
    SelectWorkspace& w = ct.w;
    w.marked.assign(ct.size(), 0);
    bool any = false;
    for (int64_t c = 1; c < ct.size(); ++c) {
        w.marked[c] = ct.kids_begin(c) == ct.kids_end(c);
        any = any || w.marked[c];
    }
    if (epsilon != 0.0 && any) {
        epsilon_search(ct, w.marked, allow_single_cluster, epsilon, w.selected);
    } else {
        w.selected = w.marked;
    }
}

void label_points(const ClusterTree& ct, const std::vector<int64_t>& clusters, bool allow_single_cluster,
                  double epsilon, Selection& out) {
    const SelectWorkspace& w = ct.w;
    std::vector<int64_t>& label_of = ct.w.label_of;
    label_of.assign(ct.size(), -1);
    for (size_t i = 0; i < clusters.size(); ++i) label_of[clusters[i]] = static_cast<int64_t>(i);
    const bool root_alone = clusters.size() == 1 && clusters[0] == 0 && allow_single_cluster;
    const double root_threshold = epsilon != 0.0 ? 1.0 / epsilon : w.death[0];
    out.labels.assign(ct.n_points, -1);
    out.probabilities.assign(ct.n_points, 0.0);
    for (int64_t i = 0; i < ct.n_points; ++i) {
        int64_t c = w.point_cluster[i];
        while (label_of[c] < 0 && w.parent[c] >= 0) c = w.parent[c];
        if (label_of[c] < 0 || (c == 0 && !(root_alone && w.point_lambda[i] >= root_threshold))) continue;
        out.labels[i] = label_of[c];
        const double lam = w.point_lambda[i], death = w.death[c];
        out.probabilities[i] = (death == 0.0 || !std::isfinite(lam)) ? 1.0 : std::min(lam, death) / death;
    }
}

}  // namespace

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, SelectionMethod method,
                          bool allow_single_cluster, double epsilon) {
    SelectOptions options;
    options.method = method;
    options.allow_single_cluster = allow_single_cluster;
    options.epsilon = epsilon;
    return select_clusters(condensed, n_points, options);
}

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, const SelectOptions& options) {
    SelectWorkspace work;
    Selection out;
    select_clusters(condensed, n_points, options, work, out);
    return out;
}

void select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, SelectionMethod method,
                     bool allow_single_cluster, double epsilon, SelectWorkspace& work, Selection& out) {
    SelectOptions options;
    options.method = method;
    options.allow_single_cluster = allow_single_cluster;
    options.epsilon = epsilon;
    select_clusters(condensed, n_points, options, work, out);
}

void select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, const SelectOptions& options,
                     SelectWorkspace& work, Selection& out) {
    const SelectionMethod method = options.method;
    const bool allow_single_cluster = options.allow_single_cluster;
    const double epsilon = options.epsilon;
    if (n_points < 1) throw std::invalid_argument("select_clusters: n must be >= 1, got " + std::to_string(n_points));
    if (!(epsilon >= 0.0) || !std::isfinite(epsilon)) {
        throw std::invalid_argument("select_clusters: epsilon must be finite and >= 0");
    }
    if (options.max_cluster_size < 0) {
        throw std::invalid_argument("select_clusters: max_cluster_size must be >= 0 (0: no limit)");
    }
    if (std::isnan(options.epsilon_max) || options.epsilon_max < 0.0) {
        throw std::invalid_argument("select_clusters: epsilon_max must be >= 0 (inf: no limit)");
    }
    out.persistence.clear();
    out.clusters.clear();
    if (n_points == 1) {
        out.labels.assign(1, -1);
        out.probabilities.assign(1, 0.0);
        return;
    }
    ClusterTree ct{n_points, cluster_count(condensed, n_points), work};
    build_cluster_tree(condensed, ct);
    if (method == SelectionMethod::eom) {
        select_eom(ct, options);
    } else {
        select_leaf(ct, allow_single_cluster, epsilon);
    }
    std::vector<int64_t>& clusters = work.clusters;
    clusters.clear();
    for (int64_t c = 0; c < ct.size(); ++c) {
        if (work.selected[c]) clusters.push_back(c);
    }
    label_points(ct, clusters, allow_single_cluster, epsilon, out);
    double max_lambda = -kInf;
    for (const CondensedRow& r : condensed) max_lambda = std::max(max_lambda, r.lambda_val);
    work.members.assign(clusters.size(), 0);
    for (const int64_t label : out.labels) {
        if (label >= 0) ++work.members[label];
    }
    for (size_t i = 0; i < clusters.size(); ++i) {
        const auto m = static_cast<double>(work.members[i]);
        const bool trivial = std::isinf(max_lambda) || max_lambda == 0.0 || work.members[i] == 0;
        out.persistence.push_back(trivial ? 1.0 : work.stability[clusters[i]] / (m * max_lambda));
        out.clusters.push_back(clusters[i] + n_points);
    }
}

std::vector<CondensedRow> simplify_hierarchy(const std::vector<CondensedRow>& condensed, int64_t n_points,
                                             double persistence) {
    if (n_points < 1) throw std::invalid_argument("simplify_hierarchy: n must be >= 1, got " + std::to_string(n_points));
    if (!(persistence >= 0.0) || !std::isfinite(persistence)) {
        throw std::invalid_argument("simplify_hierarchy: persistence must be finite and >= 0");
    }
    if (persistence == 0.0 || condensed.empty()) return condensed;
    const int64_t n = n_points, k = cluster_count(condensed, n);
    // Per cluster: parent, birth (the lambda of its row), death (max lambda of its rows) and kids.
    std::vector<int64_t> parent(k, -1), kid_start(k + 1, 0), fill, kids;
    std::vector<double> birth(k, 0.0), death(k, -kInf);
    for (const CondensedRow& r : condensed) {
        const int64_t p = r.parent - n;
        death[p] = std::max(death[p], r.lambda_val);
        if (r.child >= n) {
            parent[r.child - n] = p;
            birth[r.child - n] = r.lambda_val;
            ++kid_start[p + 1];
        }
    }
    offsets_from_counts(kid_start, fill, k);
    kids.resize(static_cast<size_t>(kid_start[k]));
    for (const CondensedRow& r : condensed) {
        if (r.child >= n) kids[fill[r.parent - n]++] = r.child - n;
    }
    // The peers' float32 arithmetic: max_births (the largest lambda in a cluster's subtree),
    // the split's lambda and their difference are float32; the threshold is compared as double.
    std::vector<float> max_births(k);
    std::vector<char> leaf(k);
    std::vector<int64_t> parent_map(k);
    std::vector<char> has_lambda(k, 0);
    std::vector<double> lambda_map(k, 0.0);
    for (int64_t c = 0; c < k; ++c) {
        max_births[c] = static_cast<float>(death[c]);
        leaf[c] = kid_start[c] == kid_start[c + 1];
        parent_map[c] = c;
    }
    for (int64_t p = k - 1; p >= 0; --p) {  // children (larger ids) before their parents
        const int64_t* first = kids.data() + kid_start[p];
        const int64_t* last = kids.data() + kid_start[p + 1];
        if (first == last) continue;
        std::sort(kids.begin() + kid_start[p], kids.begin() + kid_start[p + 1]);
        const float split = static_cast<float>(birth[*first]);
        float lo = std::numeric_limits<float>::infinity(), hi = -lo;
        int64_t sibling = *first;  // the most persistent child; the later one on a tie (the peers' rule)
        for (const int64_t* kid = first; kid != last; ++kid) {
            lo = std::min(lo, max_births[*kid]);
            if (max_births[*kid] >= hi) {
                hi = max_births[*kid];
                sibling = *kid;
            }
        }
        max_births[p] = std::max(max_births[p], hi);
        const float gap = lo - split;
        if (static_cast<double>(gap) >= persistence) continue;
        if (leaf[sibling]) {
            leaf[p] = 1;
        } else {
            for (const int64_t* kid = first; kid != last; ++kid) {
                if (*kid == sibling) continue;
                has_lambda[*kid] = 1;
                lambda_map[*kid] = static_cast<double>(split);
            }
        }
        for (const int64_t* kid = first; kid != last; ++kid) parent_map[*kid] = p;
    }
    // Each cluster's surviving ancestor, then consecutive ids in the same order.
    std::vector<int64_t> new_id(k);
    int64_t skipped = 0;
    for (int64_t c = 0; c < k; ++c) {
        parent_map[c] = parent_map[parent_map[c]];  // parents have smaller ids: already resolved
        if (parent_map[c] != c) {
            ++skipped;
        } else {
            new_id[c] = c - skipped;
        }
    }
    std::vector<CondensedRow> out;
    out.reserve(condensed.size());
    for (const CondensedRow& r : condensed) {
        if (r.child >= n && parent_map[r.child - n] != r.child - n) continue;
        const int64_t p = r.parent - n;
        CondensedRow row = r;
        // Every lambda of the rewritten tree is a float32 value, as in both libraries.
        row.lambda_val = has_lambda[p] ? lambda_map[p] : static_cast<double>(static_cast<float>(r.lambda_val));
        row.parent = n + new_id[parent_map[p]];
        if (r.child >= n) row.child = n + new_id[r.child - n];
        out.push_back(row);
    }
    return out;
}

namespace {

/// eom_labels' walk of the condensed tree (condense_tree's, breadth first from the root) over
/// linkage `rows` of n >= 2 points: each cluster's parent and birth by discovery id (0 the
/// root), its rows' stability terms (contiguous per cluster, from term_start), the ids of its
/// children (kid_end) and each point's cluster.
void walk_condensed_tree(const LinkageRow* rows, int64_t n, int64_t min_cluster_size, EomWorkspace& w) {
    auto is_leaf = [n](int64_t x) { return x < n; };
    auto size_of = [&](int64_t x) { return is_leaf(x) ? int64_t{1} : rows[x - n].size; };
    auto lambda_of = [](double d) { return d > 0.0 ? 1.0 / d : std::numeric_limits<double>::infinity(); };
    w.cluster_parent.assign(1, -1);
    w.birth.assign(1, 0.0);
    w.term_start.clear();
    w.kid_end.clear();
    w.terms.clear();
    w.point_cluster.resize(static_cast<size_t>(n));
    w.queue.assign({2 * n - 2, 0});  // (node, cluster) pairs, breadth first
    // Appends a term (lam - birth) * 1 to cluster c for every point under node y.
    auto emit_points = [&](int64_t y, int64_t c, double term) {
        if (is_leaf(y)) {  // the usual case: one point falls out
            w.point_cluster[y] = c;
            w.terms.push_back(term);
            return;
        }
        w.stack.assign(1, y);
        while (!w.stack.empty()) {
            const int64_t z = w.stack.back();
            w.stack.pop_back();
            if (is_leaf(z)) {
                w.point_cluster[z] = c;
                w.terms.push_back(term);
            } else {
                w.stack.push_back(rows[z - n].left);
                w.stack.push_back(rows[z - n].right);
            }
        }
    };
    for (size_t head = 0; head < w.queue.size(); head += 2) {
        int64_t x = w.queue[head];
        const int64_t c = w.queue[head + 1];
        w.term_start.push_back(static_cast<int64_t>(w.terms.size()));  // clusters come off the queue in id order
        for (;;) {
            const double h = rows[x - n].distance, lam = lambda_of(h), term = lam - w.birth[c];
            // The children of x under the threshold hierarchy: equal heights are one merge.
            w.children.clear();
            const int64_t left = rows[x - n].left, right = rows[x - n].right;
            auto same_height = [&](int64_t y) { return !is_leaf(y) && rows[y - n].distance == h; };
            if (!same_height(left) && !same_height(right)) {  // the usual binary merge
                w.children.push_back(left);
                w.children.push_back(right);
            } else {
                w.stack.assign({right, left});
            }
            while (!w.stack.empty()) {
                const int64_t y = w.stack.back();
                w.stack.pop_back();
                if (!is_leaf(y) && rows[y - n].distance == h) {
                    w.stack.push_back(rows[y - n].right);
                    w.stack.push_back(rows[y - n].left);
                } else {
                    w.children.push_back(y);
                }
            }
            w.big.clear();
            for (const int64_t y : w.children) {
                if (size_of(y) >= min_cluster_size) w.big.push_back(y);
            }
            if (w.big.size() >= 2) {
                for (const int64_t y : w.children) {
                    if (size_of(y) < min_cluster_size) {
                        emit_points(y, c, term);
                        continue;
                    }
                    w.terms.push_back(term * static_cast<double>(size_of(y)));
                    w.queue.push_back(y);
                    w.queue.push_back(static_cast<int64_t>(w.cluster_parent.size()));
                    w.cluster_parent.push_back(c);
                    w.birth.push_back(lam);
                }
                break;
            }
            for (const int64_t y : w.children) {
                if (w.big.empty() || y != w.big[0]) emit_points(y, c, term);
            }
            if (w.big.empty()) break;
            x = w.big[0];
        }
        // Every child of c is discovered while c is walked: c > 0 has the ids kid_end[c - 1]
        // to kid_end[c] - 1.
        w.kid_end.push_back(static_cast<int64_t>(w.cluster_parent.size()));
    }
    w.term_start.push_back(static_cast<int64_t>(w.terms.size()));
}

/// EOM on the clusters walk_condensed_tree found: each point's label (-1 noise, clusters
/// 0..K-1 in discovery order) into `labels` [n].
void label_eom_clusters(int64_t n, EomWorkspace& w, std::vector<int64_t>& labels) {
    const int64_t k = static_cast<int64_t>(w.cluster_parent.size());
    w.stability.resize(static_cast<size_t>(k));
    for (int64_t c = 0; c < k; ++c) {
        w.stability[c] = ordered_sum(w.terms.data() + w.term_start[c], w.terms.data() + w.term_start[c + 1]);
    }
    // EOM, children before parents (a child's id is larger): keep a cluster unless its
    // children's summed stability beats it; the root is never a candidate.
    w.marked.assign(static_cast<size_t>(k), 0);
    w.sub_terms.clear();
    for (int64_t c = k - 1; c >= 1; --c) {
        w.sub_terms.assign(w.stability.begin() + w.kid_end[c - 1], w.stability.begin() + w.kid_end[c]);
        const double sub = ordered_sum(w.sub_terms.data(), w.sub_terms.data() + w.sub_terms.size());
        if (sub > w.stability[c]) {
            w.stability[c] = sub;
        } else {
            w.marked[c] = 1;
        }
    }
    // Selected: marked with no marked ancestor; label_of[c]: the label of c's selected
    // ancestor-or-self, -1 if none (parents have smaller ids, so one pass in id order).
    w.covered.assign(static_cast<size_t>(k), 0);
    w.label_of.assign(static_cast<size_t>(k), -1);
    int64_t next_label = 0;
    for (int64_t c = 1; c < k; ++c) {
        const int64_t parent = w.cluster_parent[c];
        w.covered[c] = parent > 0 && (w.marked[parent] || w.covered[parent]);
        w.label_of[c] = w.marked[c] && !w.covered[c] ? next_label++ : w.label_of[parent];
    }
    labels.resize(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; ++p) labels[p] = w.label_of[w.point_cluster[p]];}

}  // namespace

void eom_labels(const std::vector<LinkageRow>& linkage, int64_t n_points, int64_t min_cluster_size,
                EomWorkspace& w, std::vector<int64_t>& labels) {
    if (static_cast<int64_t>(linkage.size()) != n_points - 1 || n_points < 1) {
        throw std::logic_error("eom_labels: expected n_points - 1 linkage rows");
    }
    const int64_t n = n_points;
    if (n == 1) {  // one point: noise, as select_clusters has it
        labels.assign(1, -1);
        return;
    }
    walk_condensed_tree(linkage.data(), n, min_cluster_size, w);
    label_eom_clusters(n, w, labels);
}

}  // namespace medscore
