// Interleaved bit-defined distances; see medscore/distance_batch.hpp. Each lane j of every
// accumulator adds (q_k - x_k)^2 for k = j, j+4, ... in increasing k, exactly as
// squared_distance() does, so the vector width changes speed, never bits.
#include "medscore/distance_batch.hpp"

#include "medscore/distance.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define MEDSCORE_X86 1
#endif

namespace medscore {
namespace {

/// Adds the d % 4 trailing terms to lanes 0, 1, 2 and combines them as the SPEC says.
inline double finish(double l0, double l1, double l2, double l3, const double* q, const double* x, int64_t k,
                     int64_t d) noexcept {
    if (k < d) { const double t = q[k] - x[k]; l0 += t * t; ++k; }
    if (k < d) { const double t = q[k] - x[k]; l1 += t * t; ++k; }
    if (k < d) { const double t = q[k] - x[k]; l2 += t * t; }
    return (l0 + l1) + (l2 + l3);
}

#ifdef MEDSCORE_X86
void four_sse2(const double* q, const double* const* x, int64_t d, double* out) noexcept {
    __m128d lo[4], hi[4];
    for (int p = 0; p < 4; ++p) lo[p] = hi[p] = _mm_setzero_pd();
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
        const __m128d qa = _mm_loadu_pd(q + k), qb = _mm_loadu_pd(q + k + 2);
        for (int p = 0; p < 4; ++p) {
            const __m128d ta = _mm_sub_pd(qa, _mm_loadu_pd(x[p] + k));
            const __m128d tb = _mm_sub_pd(qb, _mm_loadu_pd(x[p] + k + 2));
            lo[p] = _mm_add_pd(lo[p], _mm_mul_pd(ta, ta));
            hi[p] = _mm_add_pd(hi[p], _mm_mul_pd(tb, tb));
        }
    }
    for (int p = 0; p < 4; ++p) {
        double l[4];
        _mm_storeu_pd(l, lo[p]);
        _mm_storeu_pd(l + 2, hi[p]);
        out[p] = finish(l[0], l[1], l[2], l[3], q, x[p], k, d);
    }
}

__attribute__((target("avx2"))) void four_avx2(const double* q, const double* const* x, int64_t d,
                                               double* out) noexcept {
    __m256d acc[4];
    for (int p = 0; p < 4; ++p) acc[p] = _mm256_setzero_pd();
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
        const __m256d qv = _mm256_loadu_pd(q + k);
        for (int p = 0; p < 4; ++p) {
            const __m256d t = _mm256_sub_pd(qv, _mm256_loadu_pd(x[p] + k));
            acc[p] = _mm256_add_pd(acc[p], _mm256_mul_pd(t, t));
        }
    }
    for (int p = 0; p < 4; ++p) {
        double l[4];
        _mm256_storeu_pd(l, acc[p]);
        out[p] = finish(l[0], l[1], l[2], l[3], q, x[p], k, d);
    }
}

// GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized (their "undefined" upper halves).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
/// Eight rows: rows 2p and 2p + 1 share accumulator p, one in each 256-bit half, so every lane
/// still sums its own terms in order; twice the rows of four_avx2 per instruction.
__attribute__((target("avx512f"))) void eight_avx512(const double* q, const double* const* x, int64_t d,
                                                     double* out) noexcept {
    __m512d acc[4];
    for (int p = 0; p < 4; ++p) acc[p] = _mm512_setzero_pd();
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
        const __m512d qv = _mm512_broadcast_f64x4(_mm256_loadu_pd(q + k));
        for (int p = 0; p < 4; ++p) {
            const __m512d xv = _mm512_insertf64x4(_mm512_zextpd256_pd512(_mm256_loadu_pd(x[2 * p] + k)),
                                                  _mm256_loadu_pd(x[2 * p + 1] + k), 1);
            const __m512d t = _mm512_sub_pd(qv, xv);
            acc[p] = _mm512_add_pd(acc[p], _mm512_mul_pd(t, t));
        }
    }
    for (int p = 0; p < 4; ++p) {
        double l[8];
        _mm512_storeu_pd(l, acc[p]);
        out[2 * p] = finish(l[0], l[1], l[2], l[3], q, x[2 * p], k, d);
        out[2 * p + 1] = finish(l[4], l[5], l[6], l[7], q, x[2 * p + 1], k, d);
    }
}

#pragma GCC diagnostic pop

using FourKernel = void (*)(const double*, const double* const*, int64_t, double*) noexcept;

FourKernel pick_kernel() noexcept {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? four_avx2 : four_sse2;
}

/// The eight-row kernel, or null where the CPU lacks AVX-512F.
FourKernel pick_wide_kernel() noexcept {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? eight_avx512 : nullptr;
}
#endif

}  // namespace

void squared_distances(const double* q, const double* const* rows, int64_t count, int64_t d, double* out) noexcept {
    int64_t j = 0;
#ifdef MEDSCORE_X86
    static const FourKernel four = pick_kernel();
    static const FourKernel eight = pick_wide_kernel();
    if (eight != nullptr) {
        for (; j + 8 <= count; j += 8) eight(q, rows + j, d, out + j);
    }
    for (; j + 4 <= count; j += 4) four(q, rows + j, d, out + j);
#endif
    for (; j < count; ++j) out[j] = squared_distance(q, rows[j], d);
}

void PointColumns::assign(const PointsView& points, int64_t first, int64_t count) {
    rows_ = count;
    cols_ = points.cols;
    stride_ = (count + 7) / 8 * 8;
    values_.resize(static_cast<size_t>(stride_ * cols_));
    double* values = values_.data();
    for (int64_t j = 0; j < count; ++j) {
        const double* row = points.row(first + j);
        for (int64_t k = 0; k < cols_; ++k) values[k * stride_ + j] = row[k];
    }
    for (int64_t k = 0; k < cols_; ++k) {
        for (int64_t j = count; j < stride_; ++j) values[k * stride_ + j] = 0.0;
    }
}

namespace {

#if defined(__GNUC__) || defined(__clang__)
/// Eight doubles as one vector (GCC/Clang extension): one AVX-512 register, two AVX2 or
/// four SSE2 ones, depending on the clone that runs.
typedef double DoubleEight __attribute__((vector_size(64)));
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MEDSCORE_COLUMN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef MEDSCORE_COLUMN_CLONES
#define MEDSCORE_COLUMN_CLONES
#endif

MEDSCORE_COLUMN_CLONES void column_distances(const double* q, const double* values, int64_t stride, int64_t d,
                                             double* out) noexcept {
    // t = q[k] - (coordinate k of rows j .. j + 7); a macro, since a function returning the
    // vector type would change the ABI between the clones (-Wpsabi).
#define MEDSCORE_COLUMN_TERM(t, k)                              \
    DoubleEight t;                                              \
    std::memcpy(&t, values + (k) * stride + j, sizeof t);       \
    t = q[k] - t;
    for (int64_t j = 0; j < stride; j += 8) {
        DoubleEight l0 = {}, l1 = {}, l2 = {}, l3 = {};
        int64_t k = 0;
        for (; k + 4 <= d; k += 4) {
            MEDSCORE_COLUMN_TERM(t0, k)
            MEDSCORE_COLUMN_TERM(t1, k + 1)
            MEDSCORE_COLUMN_TERM(t2, k + 2)
            MEDSCORE_COLUMN_TERM(t3, k + 3)
            l0 += t0 * t0;
            l1 += t1 * t1;
            l2 += t2 * t2;
            l3 += t3 * t3;
        }
        if (k < d) { MEDSCORE_COLUMN_TERM(t, k) l0 += t * t; ++k; }
        if (k < d) { MEDSCORE_COLUMN_TERM(t, k) l1 += t * t; ++k; }
        if (k < d) { MEDSCORE_COLUMN_TERM(t, k) l2 += t * t; }
        const DoubleEight sum = (l0 + l1) + (l2 + l3);
        std::memcpy(out + j, &sum, sizeof sum);
    }
#undef MEDSCORE_COLUMN_TERM
}
#else
void column_distances(const double* q, const double* values, int64_t stride, int64_t d, double* out) noexcept {
    for (int64_t j = 0; j < stride; ++j) {
        double lane[4] = {0.0, 0.0, 0.0, 0.0};
        for (int64_t k = 0; k < d; ++k) {
            const double t = q[k] - values[k * stride + j];
            lane[k & 3] += t * t;
        }
        out[j] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
}
#endif

}  // namespace

void PointColumns::squared_distances(const double* q, double* out) const noexcept {
    column_distances(q, values_.data(), stride_, cols_, out);
}

}  // namespace medscore
