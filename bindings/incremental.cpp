// Glue for the incremental HDBSCAN kernels: numpy <-> std::vector, GIL released around the core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/incremental.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::IncrementalGraph;
using medscore::MstEdge;
using medscore::PointsView;

namespace {

using Points = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Int64s = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

PointsView points_view(const Points& x) {
    if (x.ndim() != 2) throw std::invalid_argument("X must be 2-dimensional [N, D], got ndim " + std::to_string(x.ndim()));
    return PointsView{x.data(), x.shape(0), x.shape(1)};
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
    auto* owned = new std::vector<T>(std::move(values));
    py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, owned->data(), free_when_done);
}

template <class T, class Array>
std::vector<T> to_vector(const Array& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

std::vector<MstEdge> edges_of(const py::array& mst) {
    if (!mst.dtype().equal(py::dtype::of<MstEdge>()) || mst.ndim() != 1) {
        throw std::invalid_argument("mst must be a 1-d MST_EDGE array");
    }
    const auto edges = py::array_t<MstEdge, py::array::c_style | py::array::forcecast>::ensure(mst);
    return to_vector<MstEdge>(edges);
}

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
