// The MEDS vote of a key's new rows (see memory_vote.hpp): cosine k nearest prior points,
// majority label, ties to the smallest label and the older point.
#include "memory_vote.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "medscore/distance.hpp"

namespace medscore {
namespace memory_detail {

double norm_of(const double* a, int64_t d) noexcept {
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += a[j] * a[j];
    return std::sqrt(s);
}

MEDSCORE_TLS_ACCESSOR VoteWorkspace& vote_workspace() {
    thread_local VoteWorkspace w;
    return w;
}

namespace {

/// Cosine distances 1 - x.p / (|x| |p|) from x to every row p of `prior` (1 for a zero
/// vector). Four rows are summed side by side to hide the adds' latency; each dot product
/// is still summed in index order, so the bits do not depend on the grouping.
void cosine_distances(const PointsView& prior, const double* norms, const double* x, double norm_x, double* out) {
    const int64_t d = prior.cols;
    int64_t i = 0;
    for (; i + 4 <= prior.rows; i += 4) {
        const double *p0 = prior.row(i), *p1 = prior.row(i + 1), *p2 = prior.row(i + 2), *p3 = prior.row(i + 3);
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int64_t j = 0; j < d; ++j) {
            s0 += x[j] * p0[j];
            s1 += x[j] * p1[j];
            s2 += x[j] * p2[j];
            s3 += x[j] * p3[j];
        }
        out[i] = s0; out[i + 1] = s1; out[i + 2] = s2; out[i + 3] = s3;
    }
    for (; i < prior.rows; ++i) {
        const double* p = prior.row(i);
        double s = 0.0;
        for (int64_t j = 0; j < d; ++j) s += x[j] * p[j];
        out[i] = s;
    }
    for (i = 0; i < prior.rows; ++i) {
        out[i] = (norm_x == 0.0 || norms[i] == 0.0) ? 1.0 : 1.0 - out[i] / (norm_x * norms[i]);
    }
}


/// The majority label of a few votes (count >= 1), ties to the smallest label: counted
/// pairwise, no sort.
int64_t majority_of_few(const int64_t* votes, int64_t count) {
    int64_t winner = votes[0], winner_count = 0;
    for (int64_t i = 0; i < count; ++i) {
        int64_t c = 0;
        for (int64_t j = 0; j < count; ++j) c += votes[j] == votes[i];
        if (c > winner_count || (c == winner_count && votes[i] < winner)) {
            winner = votes[i];
            winner_count = c;
        }
    }
    return winner;
}

/// The majority label of `votes` (sorted here when long), ties to the smallest label.
int64_t majority(std::vector<int64_t>& votes) {
    if (votes.size() <= 8) return majority_of_few(votes.data(), static_cast<int64_t>(votes.size()));
    std::sort(votes.begin(), votes.end());
    int64_t winner = votes[0], winner_count = 0;
    for (size_t i = 0; i < votes.size();) {
        size_t j = i;
        while (j < votes.size() && votes[j] == votes[i]) ++j;
        if (static_cast<int64_t>(j - i) > winner_count) { winner = votes[i]; winner_count = static_cast<int64_t>(j - i); }
        i = j;
    }
    return winner;
}

/// Appends (distance, index) to the sorted list `best` if it is among the k smallest.
inline void keep_k_smallest(std::vector<std::pair<double, int64_t>>& best, std::pair<double, int64_t> cand,
                            int64_t k) {
    // Rows come in increasing index, so a candidate tied with the k-th is never closer.
    const auto size = static_cast<int64_t>(best.size());
    if (size == k && !(cand.first < best.back().first)) return;
    if (size < k) best.push_back(cand);
    int64_t i = std::min(size, k - 1);  // shift larger entries up; best has k <= vote_k entries
    for (; i > 0 && cand < best[i - 1]; --i) best[i] = best[i - 1];
    best[i] = cand;
}

/// Up to this k, k_smallest keeps its list in local arrays rather than in `best`.
constexpr int64_t kSmallK = 4;

/// The k <= kSmallK smallest (value, index) pairs offered, sorted; an offer equal to the k-th
/// does not enter, so offers in index order keep ties by index (keep_k_smallest on local arrays).
struct SmallestK {
    double value[kSmallK];
    int64_t index[kSmallK];
    int64_t k, filled = 0;

    explicit SmallestK(int64_t k_) : k(k_) {}
    void offer(double v, int64_t at) noexcept {
        if (filled == k && !(v < value[k - 1])) return;
        int64_t j = filled < k ? filled++ : k - 1;
        for (; j > 0 && v < value[j - 1]; --j) { value[j] = value[j - 1]; index[j] = index[j - 1]; }
        value[j] = v;
        index[j] = at;
    }
};

/// Offers values[0 .. n) (n >= s.k) to `s` in index order, or only those that can enter: for
/// many entries a bound comes first, T, the k-th smallest of the eight column minima
/// min_b values[8b + j] (eight distinct entries, so the k-th smallest entry is at most T).
/// Only entries <= T can be among the k smallest; they are few, and offering just them, in
/// index order, gives the same pairs.
void offer_smallest(const double* values, int64_t n, SmallestK& s) {
    constexpr int64_t kLanes = 8;
    if (n < 4 * kLanes) {
        for (int64_t i = 0; i < n; ++i) s.offer(values[i], i);
        return;
    }
    double column_min[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) column_min[j] = values[j];
    const int64_t full = n / kLanes * kLanes;
    for (int64_t i = kLanes; i < full; i += kLanes) {
        for (int64_t j = 0; j < kLanes; ++j) {  // vectorised
            column_min[j] = values[i + j] < column_min[j] ? values[i + j] : column_min[j];
        }
    }
    SmallestK minima(s.k);
    for (int64_t j = 0; j < kLanes; ++j) minima.offer(column_min[j], j);
    const double bound = minima.value[s.k - 1];
    for (int64_t i = 0; i < n; ++i) {
        if (values[i] <= bound) s.offer(values[i], i);
    }
}

/// The k smallest (value, index) pairs of values[0 .. n) into `best`, sorted (ties: smaller
/// index first); k <= n. The same pairs as keep_k_smallest over every entry in index order.
void k_smallest(const double* values, int64_t n, int64_t k, std::vector<std::pair<double, int64_t>>& best) {
    if (k <= kSmallK) {  // the vote's k: local arrays
        SmallestK s(k);
        offer_smallest(values, n, s);
        best.resize(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) best[j] = {s.value[j], s.index[j]};
        return;
    }
    best.clear();
    int64_t i = 0;
    for (; i < k; ++i) keep_k_smallest(best, {values[i], i}, k);
    double kth = best.back().first;
    for (; i < n; ++i) {
        if (values[i] < kth) {
            keep_k_smallest(best, {values[i], i}, k);
            kth = best.back().first;
        }
    }
}

/// Writes the majority label of the prior points in w.best and that cluster's size.
void count_votes(const int64_t* labels, const std::vector<int64_t>& sizes, int64_t noise, VoteWorkspace& w,
                 int64_t& out_label, int64_t& out_size) {
    w.votes.clear();
    for (const auto& b : w.best) w.votes.push_back(labels[b.second]);
    out_label = majority(w.votes);
    out_size = out_label < 0 ? noise : sizes[out_label];
}

/// The MEDS vote: the k nearest prior points by cosine distance (ties: older point first),
/// majority label, ties to the smallest label. Writes the label and its size (noise: the
/// noise count; no prior point: label -1, size 0). `norms` [n_prior] are the prior rows'
/// norms, `norm_x` that of x.
void vote(const PointsView& prior, const double* norms, const int64_t* labels, const std::vector<int64_t>& sizes,
          int64_t noise, const double* x, double norm_x, int64_t k, VoteWorkspace& w, int64_t& out_label,
          int64_t& out_size) {
    k = std::min(k, prior.rows);
    if (k == 0) { out_label = -1; out_size = 0; return; }
    w.distances.resize(static_cast<size_t>(prior.rows));
    cosine_distances(prior, norms, x, norm_x, w.distances.data());
    k_smallest(w.distances.data(), prior.rows, k, w.best);
    count_votes(labels, sizes, noise, w, out_label, out_size);
}

/// Vectors whose norms are this close to 1 are unit vectors for the vote's filter.
constexpr double kUnitNormSlack = 1e-12;
/// Squared-distance margin of the filter: far above the bound 4 * (6 * slack + 1e-14) on
/// |cosine - squared / 2| for such vectors (rounding included).
constexpr double kFilterMargin = 1e-9;

/// The vote for unit vectors, given the squared Euclidean distances `squared` [n_prior]
/// from x to the prior rows. For unit vectors cosine = squared / 2 up to rounding, so only
/// the rows within kFilterMargin of the k-th smallest squared distance can be among the k
/// nearest by cosine; the exact cosine ranks those few. The same answer as vote().
void vote_unit(const PointsView& prior, const double* norms, const int64_t* labels, const std::vector<int64_t>& sizes,
               int64_t noise, const double* x, double norm_x, const double* squared, int64_t k, VoteWorkspace& w,
               int64_t& out_label, int64_t& out_size) {
    k = std::min(k, prior.rows);
    if (k == 0) { out_label = -1; out_size = 0; return; }
    auto cosine = [&](int64_t i) {
        double dot = 0.0;
        for (int64_t j = 0; j < prior.cols; ++j) dot += x[j] * prior.row(i)[j];
        return 1.0 - dot / (norm_x * norms[i]);
    };
    if (k < kSmallK) {  // the vote's k: no buffers
        // The k + 1 smallest: when the (k + 1)-th is beyond the filter's bound, the candidates
        // are the k smallest and the scan over every row is skipped.
        SmallestK near(std::min(k + 1, prior.rows));
        offer_smallest(squared, prior.rows, near);
        const double bound = near.value[k - 1] + kFilterMargin;
        SmallestK nearest(k);
        if (near.k == k || near.value[k] > bound) {
            int64_t rows[kSmallK];
            for (int64_t j = 0; j < k; ++j) {  // into index order, as the offers must come
                int64_t at = j;
                for (; at > 0 && rows[at - 1] > near.index[j]; --at) rows[at] = rows[at - 1];
                rows[at] = near.index[j];
            }
            for (int64_t j = 0; j < k; ++j) nearest.offer(cosine(rows[j]), rows[j]);
        } else {
            for (int64_t i = 0; i < prior.rows; ++i) {
                if (squared[i] <= bound) nearest.offer(cosine(i), i);
            }
        }
        int64_t votes[kSmallK] = {};
        for (int64_t j = 0; j < k; ++j) votes[j] = labels[nearest.index[j]];
        out_label = majority_of_few(votes, k);
        out_size = out_label < 0 ? noise : sizes[out_label];
        return;
    }
    const int64_t k_plus = std::min(k + 1, prior.rows);
    k_smallest(squared, prior.rows, k_plus, w.best);
    const double bound = w.best[k - 1].first + kFilterMargin;
    w.candidates.clear();
    if (k_plus == k || w.best[k].first > bound) {
        for (int64_t j = 0; j < k; ++j) w.candidates.push_back(w.best[j].second);
        std::sort(w.candidates.begin(), w.candidates.end());  // keep_k_smallest wants rows in index order
    } else {
        for (int64_t i = 0; i < prior.rows; ++i) {
            if (squared[i] <= bound) w.candidates.push_back(i);
        }
    }
    w.best.clear();
    for (const int64_t i : w.candidates) keep_k_smallest(w.best, {cosine(i), i}, k);
    count_votes(labels, sizes, noise, w, out_label, out_size);
}

/// Whether every one of the n norms is within kUnitNormSlack of 1.
bool all_unit(const double* norms, int64_t n) {
    bool unit = true;
    for (int64_t i = 0; i < n; ++i) unit &= std::abs(norms[i] - 1.0) <= kUnitNormSlack;
    return unit;
}

/// Most squared distances (new row, any row) the vote keeps for the insert: 32 MiB.
constexpr size_t kMaxSquaredBlock = size_t{1} << 22;

}  // namespace

/// The MEDS vote of every new row of a key against its prior rows, into `out`. `rows_now`
/// holds the n_prior prior rows followed by the m new ones (as stored); `norms` their norms.
/// For unit vectors the squared distances from each new row to every row of rows_now are
/// computed (by coordinate, PointColumns); returns the row stride of w.squared when it now
/// holds all m rows of them (a block of at most kMaxSquaredBlock entries), else 0.
int64_t vote_new_rows(const PointsView& rows_now, int64_t n_prior, const double* norms, const int64_t* labels,
                      const std::vector<int64_t>& sizes, int64_t noise, int64_t k, VoteWorkspace& w,
                      KeyAnswers out) {
    if (n_prior == 0) return 0;  // nothing to vote against: label -1, size 0 (as initialised)
    const PointsView prior{rows_now.data, n_prior, rows_now.cols};
    const bool unit = all_unit(norms, rows_now.rows);
    const size_t m = static_cast<size_t>(rows_now.rows - n_prior);
    int64_t stride = 0;
    bool keep_block = false;
    if (unit) {
        w.columns.assign(rows_now, 0, rows_now.rows);
        stride = w.columns.stride();
        keep_block = m * static_cast<size_t>(stride) <= kMaxSquaredBlock;
        w.squared.resize((keep_block ? m : 1) * static_cast<size_t>(stride));
    }
    for (size_t j = 0; j < m; ++j) {
        const double* x = rows_now.row(n_prior + static_cast<int64_t>(j));
        const double norm_x = norms[n_prior + static_cast<int64_t>(j)];
        if (unit) {
            double* squared = w.squared.data() + (keep_block ? j * static_cast<size_t>(stride) : 0);
            w.columns.squared_distances(x, squared);
            vote_unit(prior, norms, labels, sizes, noise, x, norm_x, squared, k, w, out.labels[j], out.sizes[j]);
        } else {
            vote(prior, norms, labels, sizes, noise, x, norm_x, k, w, out.labels[j], out.sizes[j]);
        }
    }
    return keep_block ? stride : 0;
}

}  // namespace memory_detail
}  // namespace medscore
