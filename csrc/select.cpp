// Stage 5 of docs/SPEC.md: stabilities, EOM / leaf selection, epsilon search, labels,
// probabilities and persistence. Every sum is taken in ascending order of its terms so the
// result does not depend on the order of the rows.
#include "medscore/select.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace medscore {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Float64 sum in ascending order of the values (NaN sorted last: the sum is NaN anyway).
double ordered_sum(std::vector<double> values) {
    std::sort(values.begin(), values.end(), [](double a, double b) {
        return !std::isnan(a) && (std::isnan(b) || a < b);
    });
    double total = 0.0;
    for (const double v : values) total += v;
    return total;
}

/// The clusters of a condensed tree, indexed by id - N (the root is index 0).
struct ClusterTree {
    int64_t n_points = 0;
    std::vector<int64_t> parent;           // -1 for the root
    std::vector<double> birth;
    std::vector<double> death;             // max lambda of the rows under each cluster
    std::vector<double> stability;
    std::vector<std::vector<int64_t>> kids;  // child clusters (as indices), ascending
    std::vector<int64_t> point_cluster;    // [N] parent index of each point's row
    std::vector<double> point_lambda;      // [N]

    int64_t size() const noexcept { return static_cast<int64_t>(parent.size()); }
    double eps_of(int64_t c) const noexcept { return birth[c] != 0.0 ? 1.0 / birth[c] : kInf; }
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

ClusterTree build_cluster_tree(const std::vector<CondensedRow>& rows, int64_t n) {
    ClusterTree ct;
    const int64_t k = cluster_count(rows, n);
    ct.n_points = n;
    ct.parent.assign(k, -1);
    ct.birth.assign(k, 0.0);
    ct.death.assign(k, -kInf);
    ct.kids.resize(k);
    ct.point_cluster.assign(n, -1);
    ct.point_lambda.assign(n, 0.0);
    for (const CondensedRow& r : rows) {
        const int64_t p = r.parent - n;
        ct.death[p] = std::max(ct.death[p], r.lambda_val);
        if (r.child >= n) {
            ct.parent[r.child - n] = p;
            ct.birth[r.child - n] = r.lambda_val;
            ct.kids[p].push_back(r.child - n);
        } else {
            ct.point_cluster[r.child] = p;
            ct.point_lambda[r.child] = r.lambda_val;
        }
    }
    std::vector<std::vector<double>> terms(k);
    for (const CondensedRow& r : rows) {
        const int64_t p = r.parent - n;
        terms[p].push_back((r.lambda_val - ct.birth[p]) * static_cast<double>(r.child_size));
    }
    ct.stability.resize(k);
    for (int64_t c = 0; c < k; ++c) {
        std::sort(ct.kids[c].begin(), ct.kids[c].end());
        ct.stability[c] = ordered_sum(std::move(terms[c]));
    }
    for (int64_t p = 0; p < n; ++p) {
        if (ct.point_cluster[p] < 0) {
            throw std::invalid_argument("select_clusters: point " + std::to_string(p) + " has no condensed row");
        }
    }
    return ct;
}

/// selected[c] && no ancestor selected: the clusters an ancestor's selection leaves alone.
std::vector<char> drop_covered(const ClusterTree& ct, const std::vector<char>& marked) {
    std::vector<char> covered(ct.size(), 0), out(ct.size(), 0);
    for (int64_t c = 0; c < ct.size(); ++c) {  // parents have smaller ids than children
        const int64_t p = ct.parent[c];
        covered[c] = p >= 0 && (marked[p] || covered[p]);
        out[c] = marked[c] && !covered[c];
    }
    return out;
}

std::vector<char> epsilon_search(const ClusterTree& ct, const std::vector<char>& in, bool allow_single_cluster,
                                 double epsilon) {
    std::vector<char> out(ct.size(), 0), walked(ct.size(), 0);
    for (int64_t s = 0; s < ct.size(); ++s) {
        if (!in[s]) continue;
        if (ct.eps_of(s) >= epsilon) {
            out[s] = 1;
            continue;
        }
        for (int64_t x = s;;) {
            const int64_t p = ct.parent[x];
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
    const std::vector<char> top = drop_covered(ct, walked);
    for (int64_t c = 0; c < ct.size(); ++c) out[c] = out[c] || top[c];
    return out;
}

std::vector<char> select_eom(ClusterTree& ct, bool allow_single_cluster, double epsilon) {
    std::vector<char> marked(ct.size(), 0);
    for (int64_t c = ct.size() - 1; c >= (allow_single_cluster ? 0 : 1); --c) {
        std::vector<double> sub_terms;
        for (const int64_t kid : ct.kids[c]) sub_terms.push_back(ct.stability[kid]);
        const double sub = ordered_sum(std::move(sub_terms));
        if (sub > ct.stability[c]) {
            ct.stability[c] = sub;
        } else {
            marked[c] = 1;
        }
    }
    std::vector<char> selected = drop_covered(ct, marked);
    if (epsilon != 0.0 && ct.size() > 1) {
        const bool only_root = selected[0] && std::count(selected.begin(), selected.end(), 1) == 1;
        if (only_root) return allow_single_cluster ? selected : std::vector<char>(ct.size(), 0);
        return epsilon_search(ct, selected, allow_single_cluster, epsilon);
    }
    return selected;
}

std::vector<char> select_leaf(const ClusterTree& ct, bool allow_single_cluster, double epsilon) {
    std::vector<char> leaves(ct.size(), 0);
    bool any = false;
    for (int64_t c = 1; c < ct.size(); ++c) {
        leaves[c] = ct.kids[c].empty();
        any = any || leaves[c];
    }
    if (epsilon != 0.0 && any) return epsilon_search(ct, leaves, allow_single_cluster, epsilon);
    return leaves;
}

void label_points(const ClusterTree& ct, const std::vector<int64_t>& clusters, bool allow_single_cluster,
                  double epsilon, Selection& out) {
    std::vector<int64_t> label_of(ct.size(), -1);
    for (size_t i = 0; i < clusters.size(); ++i) label_of[clusters[i]] = static_cast<int64_t>(i);
    const bool root_alone = clusters.size() == 1 && clusters[0] == 0 && allow_single_cluster;
    const double root_threshold = epsilon != 0.0 ? 1.0 / epsilon : ct.death[0];
    out.labels.assign(ct.n_points, -1);
    out.probabilities.assign(ct.n_points, 0.0);
    for (int64_t i = 0; i < ct.n_points; ++i) {
        int64_t c = ct.point_cluster[i];
        while (label_of[c] < 0 && ct.parent[c] >= 0) c = ct.parent[c];
        if (label_of[c] < 0 || (c == 0 && !(root_alone && ct.point_lambda[i] >= root_threshold))) continue;
        out.labels[i] = label_of[c];
        const double lam = ct.point_lambda[i], death = ct.death[c];
        out.probabilities[i] = (death == 0.0 || !std::isfinite(lam)) ? 1.0 : std::min(lam, death) / death;
    }
}

}  // namespace

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, SelectionMethod method,
                          bool allow_single_cluster, double epsilon) {
    if (n_points < 1) throw std::invalid_argument("select_clusters: n must be >= 1, got " + std::to_string(n_points));
    if (!(epsilon >= 0.0) || !std::isfinite(epsilon)) {
        throw std::invalid_argument("select_clusters: epsilon must be finite and >= 0");
    }
    Selection out;
    if (n_points == 1) {
        out.labels = {-1};
        out.probabilities = {0.0};
        return out;
    }
    ClusterTree ct = build_cluster_tree(condensed, n_points);
    const std::vector<char> selected = method == SelectionMethod::eom
        ? select_eom(ct, allow_single_cluster, epsilon)
        : select_leaf(ct, allow_single_cluster, epsilon);
    std::vector<int64_t> clusters;
    for (int64_t c = 0; c < ct.size(); ++c) {
        if (selected[c]) clusters.push_back(c);
    }
    label_points(ct, clusters, allow_single_cluster, epsilon, out);
    double max_lambda = -kInf;
    for (const CondensedRow& r : condensed) max_lambda = std::max(max_lambda, r.lambda_val);
    std::vector<int64_t> members(clusters.size(), 0);
    for (const int64_t label : out.labels) {
        if (label >= 0) ++members[label];
    }
    for (size_t i = 0; i < clusters.size(); ++i) {
        const auto m = static_cast<double>(members[i]);
        const bool trivial = std::isinf(max_lambda) || max_lambda == 0.0 || members[i] == 0;
        out.persistence.push_back(trivial ? 1.0 : ct.stability[clusters[i]] / (m * max_lambda));
        out.clusters.push_back(clusters[i] + n_points);
    }
    return out;
}

}  // namespace medscore
