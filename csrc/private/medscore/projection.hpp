// Orthonormal projection onto the top principal directions (private to csrc/: under csrc/private, never installed): a cheap,
// provable lower bound of Euclidean distances in high dimension, used by the kd-tree.
#pragma once
#include <cstdint>
#include <vector>

#include "medscore/matrix.hpp"

namespace medscore {

/// Rows of `basis` are (nearly) orthonormal directions: |P (a - b)| <= |a - b| * stretch.
struct Projection {
    int64_t in_dim = 0;
    int64_t out_dim = 0;
    std::vector<double> mean;    ///< [in_dim]
    std::vector<double> basis;   ///< [out_dim, in_dim], row-major
    std::vector<double> basis_by_input;  ///< the same, transposed: [in_dim, out_dim]
    double stretch = 1.0;        ///< upper bound of the operator norm of `basis` (>= 1)
    double coordinate_error = 0.0;  ///< bound of the rounding error of each projected coordinate
    double max_norm = 0.0;       ///< largest error_norm() of the points it was built from

    /// Projected coordinates [out_dim] of x [in_dim].
    void apply(const double* x, double* out) const noexcept;
    /// |(|x| + |mean|)|: the norm that bounds the rounding error of apply(x).
    double error_norm(const double* x) const noexcept;
    /// Bound of the rounding error of each coordinate of apply(x) for every x with
    /// error_norm(x) <= norm.
    double coordinate_error_for(double norm) const noexcept;
};

/// Top-`out_dim` principal subspace of `points` (subspace iteration on a fixed-seed sample of
/// at most 8192 rows), re-orthonormalised. Deterministic for given input.
Projection principal_projection(const PointsView& points, int64_t out_dim);

}  // namespace medscore
