// Glue for the batch HDBSCAN stages: numpy <-> std::vector, GIL released around the core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/hdbscan.hpp"
#include "arrays.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::CondensedRow;
using medscore::LinkageRow;
using medscore::MstEdge;

namespace {
using namespace medscore;

using medscore_bindings::from_numpy;
using medscore_bindings::Points;
using medscore_bindings::points_view;
using medscore_bindings::to_numpy;


py::tuple selection_tuple(Selection&& s) {
    return py::make_tuple(to_numpy(std::move(s.labels)), to_numpy(std::move(s.probabilities)),
                          to_numpy(std::move(s.persistence)));
}

py::array_t<double> core_distances_py(const Points& x, int64_t min_samples, int n_threads) {
    const PointsView view = points_view(x);
    std::vector<double> core;
    {
        py::gil_scoped_release release;
        core = core_distances(view, min_samples, n_threads);
    }
    return to_numpy(std::move(core));
}

py::tuple nearest_neighbors_py(const Points& x, int64_t k, int n_threads) {
    const PointsView view = points_view(x);
    Neighbors nn;
    {
        py::gil_scoped_release release;
        nn = nearest_neighbors(view, k, n_threads);
    }
    const std::vector<py::ssize_t> shape{view.rows, k};
    return py::make_tuple(to_numpy(std::move(nn.indices), shape), to_numpy(std::move(nn.distances), shape));
}

py::array_t<MstEdge> minimum_spanning_tree_py(const Points& x, const py::array_t<double, py::array::c_style | py::array::forcecast>& core,
                                              int n_threads, const py::object& initial_forest) {
    const PointsView view = points_view(x);
    if (core.ndim() != 1) throw std::invalid_argument("core must be 1-dimensional [N]");
    std::vector<double> core_values(core.data(), core.data() + core.size());
    std::vector<MstEdge> forest;
    const bool has_forest = !initial_forest.is_none();
    if (has_forest) forest = from_numpy<MstEdge>(initial_forest.cast<py::array>(), "initial_forest");
    std::vector<MstEdge> mst;
    {
        py::gil_scoped_release release;
        mst = minimum_spanning_tree(view, core_values, n_threads, has_forest ? &forest : nullptr);
    }
    return to_numpy(std::move(mst));
}

py::tuple fit_py(const Points& x, int64_t min_cluster_size, int64_t min_samples, medscore::SelectionMethod method,
                 bool allow_single_cluster, double epsilon, int n_threads) {
    const PointsView view = points_view(x);
    const HdbscanParams params{min_cluster_size, min_samples, method, allow_single_cluster, epsilon,
                               n_threads};
    HdbscanResult r;
    {
        py::gil_scoped_release release;
        r = hdbscan(view, params);
    }
    return py::make_tuple(to_numpy(std::move(r.core_distances)), to_numpy(std::move(r.mst)),
                          to_numpy(std::move(r.linkage)), to_numpy(std::move(r.condensed)),
                          to_numpy(std::move(r.selection.labels)), to_numpy(std::move(r.selection.probabilities)),
                          to_numpy(std::move(r.selection.persistence)));
}

}  // namespace

void register_hdbscan(py::module_& m) {
    // The numpy dtypes of the structs; field names and offsets equal medscore/_dtypes.py.
    PYBIND11_NUMPY_DTYPE(MstEdge, u, v, weight);
    PYBIND11_NUMPY_DTYPE(LinkageRow, left, right, distance, size);
    PYBIND11_NUMPY_DTYPE(CondensedRow, parent, child, lambda_val, child_size);
    m.def("struct_sizes", [] {
        py::dict sizes;
        sizes["MST_EDGE"] = sizeof(MstEdge);
        sizes["LINKAGE"] = sizeof(LinkageRow);
        sizes["CONDENSED"] = sizeof(CondensedRow);
        return sizes;
    }, "Byte sizes of the C++ structs behind MST_EDGE, LINKAGE and CONDENSED (a dict).");
    m.def("core_distances", &core_distances_py, py::arg("X"), py::arg("min_samples"), py::arg("n_threads") = 0,
          "Core distances float64 [N] of X float64 [N, D] (SPEC stage 1).");
    m.def("nearest_neighbors", &nearest_neighbors_py, py::arg("X"), py::arg("k"), py::arg("n_threads") = 0,
          "(indices int64 [N, k], distances float64 [N, k]) of the k nearest other points, by (distance, index).");
    m.def("minimum_spanning_tree", &minimum_spanning_tree_py, py::arg("X"), py::arg("core"),
          py::arg("n_threads") = 0, py::arg("initial_forest") = py::none(),
          "Exact mutual-reachability MST, MST_EDGE [N-1] sorted by (weight, u, v) (SPEC stage 2).");
    m.def("spanning_forest_of_edges", [](const py::array& edges, int64_t n) {
        std::vector<MstEdge> values = from_numpy<MstEdge>(edges, "edges");
        std::vector<MstEdge> forest;
        {
            py::gil_scoped_release release;
            forest = spanning_forest_of_edges(std::move(values), n);
        }
        return to_numpy(std::move(forest));
    }, py::arg("edges"), py::arg("n"), "Minimum spanning forest MST_EDGE of an MST_EDGE edge list (Kruskal).");
    m.def("single_linkage", [](const py::array& mst, int64_t n) {
        const std::vector<MstEdge> edges = from_numpy<MstEdge>(mst, "mst");
        std::vector<LinkageRow> rows;
        {
            py::gil_scoped_release release;
            rows = single_linkage(edges, n);
        }
        return to_numpy(std::move(rows));
    }, py::arg("mst"), py::arg("n"), "Single-linkage tree LINKAGE [N-1] of a sorted MST (SPEC stage 3).");
    m.def("condense_tree", [](const py::array& linkage, int64_t n, int64_t min_cluster_size) {
        const std::vector<LinkageRow> rows = from_numpy<LinkageRow>(linkage, "linkage");
        std::vector<CondensedRow> condensed;
        {
            py::gil_scoped_release release;
            condensed = condense_tree(rows, n, min_cluster_size);
        }
        return to_numpy(std::move(condensed));
    }, py::arg("linkage"), py::arg("n"), py::arg("min_cluster_size"), "Condensed tree CONDENSED (SPEC stage 4).");
    m.def("select_clusters", [](const py::array& condensed, int64_t n, medscore::SelectionMethod method,
                                bool allow_single_cluster, double epsilon, int64_t max_cluster_size,
                                double epsilon_max) {
        const std::vector<CondensedRow> rows = from_numpy<CondensedRow>(condensed, "condensed");
        SelectOptions options;
        options.method = method;
        options.allow_single_cluster = allow_single_cluster;
        options.epsilon = epsilon;
        options.max_cluster_size = max_cluster_size;
        options.epsilon_max = epsilon_max;
        Selection selection;
        {
            py::gil_scoped_release release;
            selection = select_clusters(rows, n, options);
        }
        return selection_tuple(std::move(selection));
    }, py::arg("condensed"), py::arg("n"), py::arg("method"), py::arg("allow_single_cluster"), py::arg("epsilon"),
       py::arg("max_cluster_size") = 0, py::arg("epsilon_max") = std::numeric_limits<double>::infinity(),
       "(labels int64 [N], probabilities float64 [N], persistence float64 [K]) (SPEC stage 5); "
       "max_cluster_size 0 and epsilon_max inf mean no limit.");
    m.def("simplify_hierarchy", [](const py::array& condensed, int64_t n, double persistence) {
        const std::vector<CondensedRow> rows = from_numpy<CondensedRow>(condensed, "condensed");
        std::vector<CondensedRow> simplified;
        {
            py::gil_scoped_release release;
            simplified = simplify_hierarchy(rows, n, persistence);
        }
        return to_numpy(std::move(simplified));
    }, py::arg("condensed"), py::arg("n"), py::arg("persistence"),
       "The condensed tree under cluster_selection_persistence (SPEC stage 5).");
    m.def("fit", &fit_py, py::arg("X"), py::arg("min_cluster_size"), py::arg("min_samples"), py::arg("method"),
          py::arg("allow_single_cluster"), py::arg("epsilon"), py::arg("n_threads") = 0,
          "Whole pipeline: (core, mst, linkage, condensed, labels, probabilities, persistence).");
}
