// The keyed memory's input checks (private to csrc/: memory_check.cpp defines them; the
// step, the constructor and the state import use them).
#pragma once
#include <cstdint>
#include <limits>
#include <string>

#include "medscore/matrix.hpp"
#include "medscore/memory.hpp"

namespace medscore {

/// Throws std::invalid_argument (message prefixed by `where`) unless `key`'s MST is a spanning
/// tree of its points sorted by (weight, u, v), with the weights the memory computes (exactly
/// the Euclidean distance when min_samples == 1, at least it otherwise), and its labels are the
/// clustering of that tree under `params`. `key.points`, `steps` and `labels` must be sized
/// consistently, edge endpoints in range and labels numbered (the caller checks these first).
void check_loaded_key(const KeyState& key, const MemoryParams& params, const std::string& where);

namespace memory_detail {

/// The largest norm of a row that can be L2-normalised (an infinite one cannot).
constexpr double kMaxNorm = std::numeric_limits<double>::max();

/// Throws std::invalid_argument unless every option of `p` is in range.
void check_params(const MemoryParams& p);

/// Checks a batch (penalize_step's contract) before anything changes; rows that cannot be
/// normalised are found while the rows are stored (see throw_first_unnormalisable_row).
/// Without normalisation, stored rows must lie within max_safe_magnitude (their squared
/// distances then cannot overflow).
void check_batch(const PointsView& points, const int64_t* keys, int64_t step, int64_t dim, int64_t last_step,
                 bool normalize);

/// Whether keys[0 .. n) holds two different stored keys (>= 0); usually decided by the first rows.
bool stores_two_keys(const int64_t* keys, int64_t n) noexcept;

/// The error for the first stored row (keys[i] >= 0) that cannot be L2-normalised, if there
/// is one: process_key finds such rows key by key, in parallel; this names the same row every
/// time. A norm of 0 (all zeros, or squares that underflow) or of infinity (squares that
/// overflow: the row would become all zeros) has no unit row with NumPy's bits.
void throw_first_unnormalisable_row(const PointsView& points, const int64_t* keys);

}  // namespace memory_detail
}  // namespace medscore
