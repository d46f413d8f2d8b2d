// Many bit-defined squared distances from one query at once (private to csrc/).
#pragma once
#include <cstdint>

namespace medscore {

/// out[j] = squared_distance(q, rows[j], d) for j < count, bit for bit: the same four lanes,
/// each summed in the same order, only several rows interleaved (SSE2, or AVX2 when the CPU
/// has it; never FMA) so that the additions' latency overlaps.
void squared_distances(const double* q, const double* const* rows, int64_t count, int64_t d, double* out) noexcept;

}  // namespace medscore
