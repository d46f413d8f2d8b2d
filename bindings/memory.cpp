// pybind11 glue for medscore::KeyedMemory (csrc/include/medscore/memory.hpp): converts
// arrays (with bindings/arrays.hpp), releases the GIL, calls the core. Policy lives in
// medscore/memory.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/memory.hpp"
#include "medscore/unique.hpp"
#include "arrays.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::KeyedMemory;
using medscore::MemoryParams;
using medscore::MemoryState;

namespace {

using F64Array = medscore_bindings::Doubles;
using I64Array = medscore_bindings::Int64s;
using medscore_bindings::copy_of;
using medscore_bindings::to_vector;

KeyedMemory make_memory(int64_t dim, int64_t min_cluster_size, int64_t min_samples, const std::string& method,
                         bool allow_single_cluster, double epsilon, const std::string& assign, int64_t vote_k,
                         int64_t max_age, int64_t capacity, int n_threads, bool normalize) {
    MemoryParams p;
    p.dim = dim;
    p.hdbscan.min_cluster_size = min_cluster_size;
    p.hdbscan.min_samples = min_samples;
    p.hdbscan.method = medscore_bindings::selection_method_of(method);
    p.hdbscan.allow_single_cluster = allow_single_cluster;
    p.hdbscan.epsilon = epsilon;
    if (assign == "paper") p.assign = medscore::AssignRule::paper;
    else if (assign == "exact") p.assign = medscore::AssignRule::exact;
    else throw std::invalid_argument("assign must be 'paper' or 'exact', got '" + assign + "'");
    p.vote_k = vote_k;
    p.max_age = max_age;
    p.capacity = capacity;
    p.n_threads = n_threads;
    p.normalize = normalize;
    return KeyedMemory(p);
}

py::tuple penalize_step(KeyedMemory& memory, const F64Array& points, const I64Array& keys, int64_t step) {
    if (points.ndim() != 2) throw std::invalid_argument("penalize_step: points must be [N, D]");
    if (keys.ndim() != 1 || keys.shape(0) != points.shape(0)) {
        throw std::invalid_argument("penalize_step: keys must be [N] with N = " + std::to_string(points.shape(0)));
    }
    const medscore::PointsView view{points.data(), points.shape(0), points.shape(1)};
    py::array_t<int64_t> labels(points.shape(0)), sizes(points.shape(0));
    int64_t* labels_out = labels.mutable_data();
    int64_t* sizes_out = sizes.mutable_data();
    {
        py::gil_scoped_release release;
        memory.penalize_step(view, keys.data(), step, labels_out, sizes_out);
    }
    return py::make_tuple(labels, sizes);
}

py::dict state_of(const KeyedMemory& memory) {
    MemoryState s;
    {
        py::gil_scoped_release release;
        s = memory.state();
    }
    std::vector<int64_t> u(s.mst.size()), v(s.mst.size());
    std::vector<double> w(s.mst.size());
    for (size_t i = 0; i < s.mst.size(); ++i) { u[i] = s.mst[i].u; v[i] = s.mst[i].v; w[i] = s.mst[i].weight; }
    const py::array_t<double> points =
        copy_of(s.points, {static_cast<py::ssize_t>(s.steps.size()), static_cast<py::ssize_t>(s.dim)});
    py::dict d;
    d["dim"] = s.dim;
    d["last_step"] = s.last_step;
    d["offsets"] = copy_of(s.offsets);
    d["points"] = points;
    d["steps"] = copy_of(s.steps);
    d["labels"] = copy_of(s.labels);
    d["mst_u"] = copy_of(u);
    d["mst_v"] = copy_of(v);
    d["mst_weight"] = copy_of(w);
    return d;
}

void load_state(KeyedMemory& memory, int64_t dim, int64_t last_step, const I64Array& offsets, const F64Array& points,
                const I64Array& steps, const I64Array& labels, const I64Array& mst_u, const I64Array& mst_v,
                const F64Array& mst_weight) {
    if (mst_u.size() != mst_v.size() || mst_u.size() != mst_weight.size()) {
        throw std::invalid_argument("load_state: mst_u, mst_v and mst_weight must have one length");
    }
    MemoryState s;
    s.dim = dim;
    s.last_step = last_step;
    s.offsets = to_vector<int64_t>(offsets);
    s.points = to_vector<double>(points);
    s.steps = to_vector<int64_t>(steps);
    s.labels = to_vector<int64_t>(labels);
    s.mst.resize(static_cast<size_t>(mst_u.size()));
    for (size_t i = 0; i < s.mst.size(); ++i) s.mst[i] = medscore::MstEdge{mst_u.data()[i], mst_v.data()[i], mst_weight.data()[i]};
    py::gil_scoped_release release;
    memory.load_state(s);
}

py::tuple moments_of(const KeyedMemory& memory) {
    medscore::Moments m;
    {
        py::gil_scoped_release release;
        m = memory.moments();
    }
    const auto d = static_cast<py::ssize_t>(m.sum.size());
    return py::make_tuple(m.count, copy_of(m.sum), copy_of(m.outer_sum, {d, d}));
}

py::tuple unique_int64(const I64Array& values) {
    if (values.ndim() != 1) throw std::invalid_argument("unique_int64: values must be [N]");
    medscore::UniqueValues u;
    {
        py::gil_scoped_release release;
        u = medscore::unique_values(values.data(), values.shape(0));
    }
    return py::make_tuple(copy_of(u.values), copy_of(u.inverse));
}

}  // namespace

void register_memory(py::module_& m) {
    m.def("unique_int64", &unique_int64, py::arg("values"),
          "values int64 [N] -> (distinct values int64 [U] increasing, inverse int64 [N]): "
          "np.unique(values, return_inverse=True).");
    py::class_<KeyedMemory>(m, "KeyedMemory", "Per-key exact HDBSCAN memory (see medscore/memory.hpp).")
        .def(py::init(&make_memory), py::arg("dim"), py::arg("min_cluster_size"), py::arg("min_samples"),
             py::arg("method"), py::arg("allow_single_cluster"), py::arg("epsilon"), py::arg("assign"),
             py::arg("vote_k"), py::arg("max_age"), py::arg("capacity"), py::arg("n_threads"),
             py::arg("normalize") = false)
        .def("penalize_step", &penalize_step, py::arg("points"), py::arg("keys"), py::arg("step"),
             "points f64 [N, D], keys int64 [N] (-1: row not stored) -> (labels int64 [N], sizes int64 [N]); "
             "GIL released.")
        .def("state", &state_of, "The memory as a dict of numpy arrays.")
        .def("load_state", &load_state, py::arg("dim"), py::arg("last_step"), py::arg("offsets"), py::arg("points"),
             py::arg("steps"), py::arg("labels"), py::arg("mst_u"), py::arg("mst_v"), py::arg("mst_weight"))
        .def("moments", &moments_of, "(count, sum f64 [D], outer_sum f64 [D, D]) over every stored point.")
        .def("key_labels", [](const KeyedMemory& mem, int64_t key) { return copy_of(mem.key_state(key).labels); })
        .def("key_steps", [](const KeyedMemory& mem, int64_t key) { return copy_of(mem.key_state(key).steps); })
        .def("key_sizes", [](const KeyedMemory& mem) { return copy_of(mem.key_sizes()); },
             "Points held by each key id: int64 [number of key ids].")
        .def("compact", [](KeyedMemory& mem, const std::vector<int64_t>& kept) { mem.compact(kept); }, py::arg("kept"),
             "Key i becomes old key kept[i] (increasing); every key left out must be empty.")
        .def_property_readonly("last_step", &KeyedMemory::last_step)
        .def_property_readonly("n_keys", &KeyedMemory::n_keys)
        .def_property_readonly("n_points", &KeyedMemory::n_points)
        .def_property_readonly("n_clusters", &KeyedMemory::n_clusters)
        .def_property_readonly("n_noise", &KeyedMemory::n_noise);
}
