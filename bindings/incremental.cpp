// Glue for the incremental HDBSCAN kernels: numpy <-> std::vector, GIL released around the core.
#include <limits>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/incremental.hpp"
#include "medscore/incremental_hdbscan.hpp"
#include "arrays.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::IncrementalGraph;
using medscore::MstEdge;
using medscore::PointsView;

namespace {

using medscore_bindings::copy_of;
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

medscore::IncrementalHDBSCAN make_engine(int64_t min_cluster_size, int64_t min_samples, medscore::SelectionMethod method,
                                         bool allow_single_cluster, int64_t capacity, int n_threads,
                                         int64_t max_cluster_size, double epsilon_max) {
    medscore::IncrementalParams p;
    p.min_cluster_size = min_cluster_size;
    p.min_samples = min_samples;
    p.method = method;
    p.allow_single_cluster = allow_single_cluster;
    p.capacity = capacity;
    p.n_threads = n_threads;
    if (max_cluster_size < 0) throw std::invalid_argument("IncrementalHDBSCAN: max_cluster_size must be >= 0");
    if (!(epsilon_max >= 0.0)) throw std::invalid_argument("IncrementalHDBSCAN: epsilon_max must be >= 0");
    p.max_cluster_size = max_cluster_size;
    p.epsilon_max = epsilon_max;
    return medscore::IncrementalHDBSCAN(p);
}

/// The engine's parameters and state as a tuple of plain values and arrays (pickling).
py::tuple state_tuple(const medscore::IncrementalHDBSCAN& e) {
    const medscore::IncrementalParams& p = e.params();
    const medscore::IncrementalState& s = e.state();
    const auto n = static_cast<py::ssize_t>(s.ids.size());
    const auto k = static_cast<py::ssize_t>(s.graph.k);
    return py::make_tuple(
        py::make_tuple(p.min_cluster_size, p.min_samples, py::cast(p.method).attr("name"),
                       p.allow_single_cluster, p.capacity, p.n_threads, p.max_cluster_size, p.epsilon_max),
        s.dim, copy_of(s.shift), copy_of(s.points), copy_of(s.ids), copy_of(s.magnitude), k,
        copy_of(s.graph.knn_index), copy_of(s.graph.knn_dist), copy_of(s.graph.core), copy_of(s.graph.mst),
        copy_of(s.labels), copy_of(s.probabilities), copy_of(s.condensed), s.next_id, s.next_label, n);
}

medscore::IncrementalHDBSCAN engine_of(const py::tuple& t) {
    if (t.size() != 17) throw std::invalid_argument("IncrementalHDBSCAN: not an engine state");
    const auto params = t[0].cast<py::tuple>();
    if (params.size() != 6 && params.size() != 8) throw std::invalid_argument("IncrementalHDBSCAN: not an engine state");
    const bool options = params.size() == 8;  // states pickled before the selection options have 6
    const medscore::IncrementalHDBSCAN fresh = make_engine(
        params[0].cast<int64_t>(), params[1].cast<int64_t>(), params[2].cast<medscore::SelectionMethod>(), params[3].cast<bool>(),
        params[4].cast<int64_t>(), params[5].cast<int>(), options ? params[6].cast<int64_t>() : 0,
        options ? params[7].cast<double>() : std::numeric_limits<double>::infinity());
    medscore::IncrementalState s;
    s.dim = t[1].cast<int64_t>();
    s.shift = to_vector<double>(t[2].cast<Doubles>());
    s.points = to_vector<double>(t[3].cast<Doubles>());
    s.ids = to_vector<int64_t>(t[4].cast<Int64s>());
    s.magnitude = to_vector<double>(t[5].cast<Doubles>());
    s.graph.k = t[6].cast<int64_t>();
    s.graph.knn_index = to_vector<int64_t>(t[7].cast<Int64s>());
    s.graph.knn_dist = to_vector<double>(t[8].cast<Doubles>());
    s.graph.core = to_vector<double>(t[9].cast<Doubles>());
    s.graph.mst = medscore_bindings::from_numpy<MstEdge>(t[10].cast<py::array>(), "mst");
    s.labels = to_vector<int64_t>(t[11].cast<Int64s>());
    s.probabilities = to_vector<double>(t[12].cast<Doubles>());
    s.condensed = medscore_bindings::from_numpy<medscore::CondensedRow>(t[13].cast<py::array>(), "condensed");
    s.next_id = t[14].cast<int64_t>();
    s.next_label = t[15].cast<int64_t>();
    return medscore::IncrementalHDBSCAN(fresh.params(), std::move(s));
}

}  // namespace

void register_incremental(py::module_& m) {
    using Engine = medscore::IncrementalHDBSCAN;
    // The GIL stays held during updates: the engine is mutated in place, and holding it makes
    // concurrent calls on one object from Python threads safe.
    py::class_<Engine>(m, "IncrementalHDBSCAN",
                       "The exact incremental HDBSCAN* engine (csrc/include/medscore/incremental_hdbscan.hpp).")
        .def(py::init(&make_engine), py::arg("min_cluster_size"), py::arg("min_samples"), py::arg("method"),
             py::arg("allow_single_cluster"), py::arg("capacity") = 0, py::arg("n_threads") = 0,
             py::arg("max_cluster_size") = 0, py::arg("epsilon_max") = std::numeric_limits<double>::infinity())
        .def("insert", [](Engine& e, const Points& x) { return e.insert(points_view(x)); }, py::arg("X"),
             "Insert rows (float64 [B, D]); returns the first id given (ids are consecutive).")
        .def("remove", [](Engine& e, const Int64s& ids) {
            if (ids.ndim() != 1) throw std::invalid_argument("ids must be 1-dimensional");
            e.remove(to_vector<int64_t>(ids));
        }, py::arg("ids"), "Remove live points by id (int64 [R], distinct).")
        .def(py::pickle(&state_tuple, &engine_of))
        .def_property_readonly("size", &Engine::size)
        .def_property_readonly("dim", &Engine::dim)
        .def_property_readonly("next_id", &Engine::next_id)
        .def_property_readonly("next_label", &Engine::next_label)
        .def_property_readonly("points", [](const Engine& e) {
            return copy_of(e.points(), {static_cast<py::ssize_t>(e.size()), static_cast<py::ssize_t>(e.dim())});
        }, "float64 [N, D] copy of the live points, in id order")
        .def_property_readonly("ids", [](const Engine& e) { return copy_of(e.ids()); })
        .def_property_readonly("knn_index", [](const Engine& e) {
            const auto& g = e.graph();
            return copy_of(g.knn_index, {static_cast<py::ssize_t>(e.size()), static_cast<py::ssize_t>(g.k)});
        })
        .def_property_readonly("knn_dist", [](const Engine& e) {
            const auto& g = e.graph();
            return copy_of(g.knn_dist, {static_cast<py::ssize_t>(e.size()), static_cast<py::ssize_t>(g.k)});
        })
        .def_property_readonly("core_distances", [](const Engine& e) { return copy_of(e.graph().core); })
        .def_property_readonly("mst", [](const Engine& e) { return copy_of(e.graph().mst); })
        .def_property_readonly("labels", [](const Engine& e) { return copy_of(e.labels()); })
        .def_property_readonly("probabilities", [](const Engine& e) { return copy_of(e.probabilities()); })
        .def_property_readonly("condensed_tree", [](const Engine& e) { return copy_of(e.condensed_tree()); });
    m.def("incremental_insert", &insert_rows_py, py::arg("X"), py::arg("n_old"), py::arg("knn_index"),
          py::arg("knn_dist"), py::arg("mst"), py::arg("n_threads") = 0,
          "Exact graph after appending rows n_old.. of X: (knn_index int64 [N, k], knn_dist float64 [N, k], "
          "core float64 [N], mst MST_EDGE [N-1] sorted), from the first n_old rows' graph (same k).");
    m.def("knn_of_rows", &knn_of_rows_py, py::arg("X"), py::arg("rows"), py::arg("k"), py::arg("n_threads") = 0,
          "Exact k nearest other rows of X[rows] by (distance, index): (int64 [M, k], float64 [M, k]).");
}
