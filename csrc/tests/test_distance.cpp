// ctest for the batched distance kernels: squared_distances() (SSE2, AVX2 four-row and AVX-512
// eight-row kernels, whichever the CPU runs) gives the bits of squared_distance() for every
// dimension 1..40 and batch size 1..19, including values whose sums round differently by order;
// so do the by-coordinate distances of PointColumns.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "medscore/distance.hpp"
#include "medscore/distance_batch.hpp"

using namespace medscore;
using namespace medscore_test;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

void test_batches_match_the_scalar_definition() {
    std::mt19937_64 rng(7);
    // Mixed magnitudes make the lane order matter for the rounding of the sums.
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    std::uniform_int_distribution<int> exponent(-30, 30);
    for (int64_t d = 1; d <= 40; ++d) {
        for (int64_t count = 1; count <= 19; ++count) {
            std::vector<double> q(static_cast<size_t>(d)), data(static_cast<size_t>(d * count)), out(count);
            for (double& v : q) v = std::ldexp(unit(rng), exponent(rng));
            for (double& v : data) v = std::ldexp(unit(rng), exponent(rng));
            std::vector<const double*> rows;
            for (int64_t j = 0; j < count; ++j) rows.push_back(data.data() + j * d);
            squared_distances(q.data(), rows.data(), count, d, out.data());
            for (int64_t j = 0; j < count; ++j) CHECK(same_bits(out[j], squared_distance(q.data(), rows[j], d)));
        }
    }
}

void test_columns_match_the_scalar_definition() {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    std::uniform_int_distribution<int> exponent(-30, 30);
    for (int64_t d = 1; d <= 40; ++d) {
        for (int64_t count = 1; count <= 27; count += 2) {
            // Rows [first, first + count) of a bigger matrix, as the memory passes a key's slice.
            const int64_t first = count % 3;
            std::vector<double> q(static_cast<size_t>(d)), data(static_cast<size_t>(d * (first + count)));
            for (double& v : q) v = std::ldexp(unit(rng), exponent(rng));
            for (double& v : data) v = std::ldexp(unit(rng), exponent(rng));
            const PointsView points{data.data(), first + count, d};
            PointColumns columns;
            columns.assign(points, first, count);
            CHECK(columns.rows() == count && columns.stride() % 8 == 0 && columns.stride() >= count);
            std::vector<double> out(static_cast<size_t>(columns.stride()));
            columns.squared_distances(q.data(), out.data());
            for (int64_t j = 0; j < count; ++j) {
                CHECK(same_bits(out[j], squared_distance(q.data(), points.row(first + j), d)));
            }
        }
    }
}

}  // namespace

int main() {
    test_batches_match_the_scalar_definition();
    test_columns_match_the_scalar_definition();
    return report("test_distance");
}
