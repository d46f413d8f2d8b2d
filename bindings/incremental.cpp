// Glue for the incremental HDBSCAN kernels: numpy <-> std::vector, GIL released around the core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/incremental.hpp"
#include "arrays.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::IncrementalGraph;
using medscore::MstEdge;
using medscore::PointsView;

namespace {

using medscore_bindings::Doubles;
using medscore_bindings::Int64s;
using medscore_bindings::Points;
using medscore_bindings::points_view;
using medscore_bindings::to_numpy;
using medscore_bindings::to_vector;

std::vector<MstEdge> edges_of(const py::array& mst) { return medscore_bindings::from_numpy<MstEdge>(mst, "mst"); }

py::tuple insert_rows_py(const Points& x, int64_t n_old, const Int64s& knn_index, const Doubles& knn_dist,
                         const py::array& mst, int n_threads) {
    const PointsView view = points_view(x);
    if (knn_index.ndim() != 2 || knn_dist.ndim() != 2 || knn_index.shape(1) != knn_dist.shape(1)) {
        throw std::invalid_argument("knn_index and knn_dist must be [n_old, k] arrays of the same shape");
    }
    IncrementalGraph old;
    old.k = knn_index.shape(1);
    old.knn_index = to_vector<int64_t>(knn_index);
    old.knn_dist = to_vector<double>(knn_dist);
    old.core.resize(static_cast<size_t>(knn_dist.shape(0)));
    for (size_t i = 0; i < old.core.size(); ++i) old.core[i] = old.knn_dist[(i + 1) * old.k - 1];
    old.mst = edges_of(mst);
    IncrementalGraph g;
    {
        py::gil_scoped_release release;
        g = medscore::insert_rows(view, n_old, old, n_threads);
    }
    const std::vector<py::ssize_t> shape{view.rows, g.k};
    const auto n_edges = static_cast<py::ssize_t>(g.mst.size());
    return py::make_tuple(to_numpy(std::move(g.knn_index), shape), to_numpy(std::move(g.knn_dist), shape),
                          to_numpy(std::move(g.core), {view.rows}), to_numpy(std::move(g.mst), {n_edges}));
}

py::tuple knn_of_rows_py(const Points& x, const Int64s& rows, int64_t k, int n_threads) {
    const PointsView view = points_view(x);
    if (rows.ndim() != 1) throw std::invalid_argument("rows must be 1-dimensional");
    const std::vector<int64_t> wanted = to_vector<int64_t>(rows);
    std::vector<int64_t> indices;
    std::vector<double> distances;
    {
        py::gil_scoped_release release;
        medscore::nearest_neighbors_of_rows(view, wanted, k, indices, distances, n_threads);
    }
    const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(wanted.size()), k};
    return py::make_tuple(to_numpy(std::move(indices), shape), to_numpy(std::move(distances), shape));
}

}  // namespace

void register_incremental(py::module_& m) {
    m.def("incremental_insert", &insert_rows_py, py::arg("X"), py::arg("n_old"), py::arg("knn_index"),
          py::arg("knn_dist"), py::arg("mst"), py::arg("n_threads") = 0,
          "Exact graph after appending rows n_old.. of X: (knn_index int64 [N, k], knn_dist float64 [N, k], "
          "core float64 [N], mst MST_EDGE [N-1] sorted), from the first n_old rows' graph (same k).");
    m.def("knn_of_rows", &knn_of_rows_py, py::arg("X"), py::arg("rows"), py::arg("k"), py::arg("n_threads") = 0,
          "Exact k nearest other rows of X[rows] by (distance, index): (int64 [M, k], float64 [M, k]).");
}
