// The MEDS vote of a key's new rows against its prior rows (internal to csrc/, not installed).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "medscore/distance_batch.hpp"
#include "medscore/matrix.hpp"
#include "medscore/thread_local.hpp"

namespace medscore {
namespace memory_detail {

/// Where a key's answers go: entry j belongs to the key's j-th batch row. The key's entries
/// are contiguous (in grouped order), so threads working on different keys do not write to
/// the same cache lines; penalize_step scatters them to batch order afterwards.
struct KeyAnswers {
    int64_t* labels;
    int64_t* sizes;
};

/// Euclidean norm of a[0 .. d), summed in index order.
double norm_of(const double* a, int64_t d) noexcept;

/// Buffers of the vote, reused by every key a thread processes.
struct VoteWorkspace {
    PointColumns columns;  ///< the key's rows by coordinate
    std::vector<double> distances;
    std::vector<double> squared;  ///< [m, n_prior] squared Euclidean distances new row -> prior row
    std::vector<int64_t> candidates;
    std::vector<std::pair<double, int64_t>> best;
    std::vector<int64_t> votes;
    std::vector<double> squares;    ///< [dim] a row's squared entries, for its norm
    std::vector<double> row_norms;  ///< [m] the norms of a key's new rows
};

/// This thread's vote workspace (kept across keys and steps).
VoteWorkspace& vote_workspace();

/// The MEDS vote of every new row of a key against its prior rows, into `out`. `rows_now`
/// holds the n_prior prior rows followed by the m new ones (as stored); `norms` their norms.
/// For unit vectors the squared distances from each new row to every row of rows_now are
/// computed (by coordinate, PointColumns); returns the row stride of w.squared when it now
/// holds all m rows of them (a block of at most kMaxSquaredBlock entries), else 0.
int64_t vote_new_rows(const PointsView& rows_now, int64_t n_prior, const double* norms, const int64_t* labels,
                      const std::vector<int64_t>& sizes, int64_t noise, int64_t k, VoteWorkspace& w,
                      KeyAnswers out);

}  // namespace memory_detail
}  // namespace medscore
