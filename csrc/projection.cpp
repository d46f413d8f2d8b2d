// Principal-subspace projection for distance lower bounds; see medscore/projection.hpp.
#include "medscore/projection.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace medscore {
namespace {

/// Modified Gram-Schmidt, twice, on the columns of q [dim, m] (column-major).
void orthonormalize(std::vector<double>& q, int64_t dim, int64_t m) {
    for (int pass = 0; pass < 2; ++pass) {
        for (int64_t j = 0; j < m; ++j) {
            double* col = q.data() + j * dim;
            for (int64_t i = 0; i < j; ++i) {
                const double* prev = q.data() + i * dim;
                double dot = 0.0;
                for (int64_t k = 0; k < dim; ++k) dot += prev[k] * col[k];
                for (int64_t k = 0; k < dim; ++k) col[k] -= dot * prev[k];
            }
            double norm = 0.0;
            for (int64_t k = 0; k < dim; ++k) norm += col[k] * col[k];
            norm = std::sqrt(norm);
            // A degenerate direction (rank-deficient data) becomes a unit axis; it stays valid.
            if (!(norm > 1e-300)) {
                std::fill(col, col + dim, 0.0);
                col[j % dim] = 1.0;
                norm = 1.0;
            }
            for (int64_t k = 0; k < dim; ++k) col[k] /= norm;
        }
    }
}

/// An upper bound of the operator norm of the rows `basis` [m, dim]: sqrt(1 + ||B B^T - I||_F).
double stretch_of(const std::vector<double>& basis, int64_t m, int64_t dim) {
    double frobenius = 0.0;
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < m; ++j) {
            double dot = 0.0;
            for (int64_t k = 0; k < dim; ++k) dot += basis[i * dim + k] * basis[j * dim + k];
            const double off = dot - (i == j ? 1.0 : 0.0);
            frobenius += off * off;
        }
    }
    // Generous slack for the rounding of this very computation.
    return std::sqrt(1.0 + std::sqrt(frobenius) + 1e-12);
}

}  // namespace

void Projection::apply(const double* x, double* out) const noexcept {
    // Outputs accumulate side by side (the inner loop runs over them and vectorises); each
    // output still sums its terms in order k = 0, 1, ..., as the error bound assumes.
    for (int64_t j = 0; j < out_dim; ++j) out[j] = 0.0;
    for (int64_t k = 0; k < in_dim; ++k) {
        const double centred = x[k] - mean[k];
        const double* column = basis_by_input.data() + k * out_dim;
        for (int64_t j = 0; j < out_dim; ++j) out[j] += column[j] * centred;
    }
}

Projection principal_projection(const PointsView& points, int64_t out_dim) {
    const int64_t n = points.rows, dim = points.cols, m = std::min(out_dim, dim);
    Projection p;
    p.in_dim = dim;
    p.out_dim = m;
    p.mean.assign(dim, 0.0);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < dim; ++k) p.mean[k] += points.row(i)[k];
    }
    for (double& v : p.mean) v /= static_cast<double>(n);
    // A fixed-seed random sample: a stride could alias with periodic row orders.
    std::mt19937_64 rng(12345);
    std::vector<int64_t> sample;
    if (n <= 8192) {
        for (int64_t i = 0; i < n; ++i) sample.push_back(i);
    } else {
        std::uniform_int_distribution<int64_t> pick(0, n - 1);
        for (int64_t s = 0; s < 8192; ++s) sample.push_back(pick(rng));
        std::sort(sample.begin(), sample.end());
    }
    std::normal_distribution<double> gauss;
    std::vector<double> q(dim * m), z(sample.size() * m), centred(sample.size() * dim);
    for (double& v : q) v = gauss(rng);
    orthonormalize(q, dim, m);
    for (size_t s = 0; s < sample.size(); ++s) {
        const double* x = points.row(sample[s]);
        for (int64_t k = 0; k < dim; ++k) centred[s * dim + k] = x[k] - p.mean[k];
    }
    // Subspace iteration, Q <- orth(C^T C Q^T): loops ordered so that the innermost one runs
    // over independent outputs (vectorisable, no reduction).
    std::vector<double> qt(dim * m);  // Q transposed, [dim, m]
    for (int iter = 0; iter < 4; ++iter) {
        for (int64_t j = 0; j < m; ++j) {
            for (int64_t k = 0; k < dim; ++k) qt[k * m + j] = q[j * dim + k];
        }
        std::fill(z.begin(), z.end(), 0.0);
        for (size_t s = 0; s < sample.size(); ++s) {
            const double* c = centred.data() + s * dim;
            double* zs = z.data() + s * m;
            for (int64_t k = 0; k < dim; ++k) {
                for (int64_t j = 0; j < m; ++j) zs[j] += c[k] * qt[k * m + j];
            }
        }
        std::fill(q.begin(), q.end(), 0.0);
        for (size_t s = 0; s < sample.size(); ++s) {
            const double* c = centred.data() + s * dim;
            for (int64_t j = 0; j < m; ++j) {
                const double zj = z[s * m + j];
                double* qj = q.data() + j * dim;
                for (int64_t k = 0; k < dim; ++k) qj[k] += c[k] * zj;
            }
        }
        orthonormalize(q, dim, m);
    }
    p.basis = q;  // column j of q is row j of the basis (both [m][dim] contiguous)
    p.basis_by_input.resize(q.size());
    for (int64_t j = 0; j < m; ++j) {
        for (int64_t k = 0; k < dim; ++k) p.basis_by_input[k * m + j] = q[j * dim + k];
    }
    p.stretch = stretch_of(p.basis, m, dim);
    p.max_norm = 0.0;
    for (int64_t i = 0; i < n; ++i) p.max_norm = std::max(p.max_norm, p.error_norm(points.row(i)));
    p.coordinate_error = p.coordinate_error_for(p.max_norm);
    return p;
}

double Projection::error_norm(const double* x) const noexcept {
    double s = 0.0;
    for (int64_t k = 0; k < in_dim; ++k) {
        const double c = std::abs(x[k]) + std::abs(mean[k]);
        s += c * c;
    }
    return std::sqrt(s);
}

double Projection::coordinate_error_for(double norm) const noexcept {
    // |fl(sum_k b_k (x_k - mu_k)) - exact| <= gamma_{dim+1} * sum |b_k| (|x_k| + |mu_k|)
    // <= gamma * |b| * |(|x| + |mu|)|, with |b| <= stretch; doubled for safety.
    const double gamma = static_cast<double>(in_dim + 2) * std::numeric_limits<double>::epsilon();
    return 2.0 * gamma * stretch * norm;
}

}  // namespace medscore
