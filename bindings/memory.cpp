// pybind11 glue for medscore::Memory (csrc/include/medscore/error_memory.hpp), its options,
// and its engine medscore::KeyedMemory (memory.hpp): converts arrays (with
// bindings/arrays.hpp), releases the GIL, calls the core. The rules live in the core;
// medscore/memory.py is the Python facade.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/error_memory.hpp"
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
using medscore_bindings::to_numpy;
using medscore_bindings::to_vector;
using medscore_bindings::Doubles;

KeyedMemory make_memory(int64_t dim, int64_t min_cluster_size, int64_t min_samples, medscore::SelectionMethod method,
                        bool allow_single_cluster, double epsilon, medscore::AssignRule assign, int64_t vote_k,
                        int64_t max_age, int64_t capacity, int n_threads, bool normalize) {
    MemoryParams p;
    p.dim = dim;
    p.hdbscan.min_cluster_size = min_cluster_size;
    p.hdbscan.min_samples = min_samples;
    p.hdbscan.method = method;
    p.hdbscan.allow_single_cluster = allow_single_cluster;
    p.hdbscan.epsilon = epsilon;
    p.assign = assign;
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

py::dict engine_state_dict(const MemoryState& s) {
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

py::dict state_of(const KeyedMemory& memory) {
    MemoryState s;
    {
        py::gil_scoped_release release;
        s = memory.state();
    }
    return engine_state_dict(s);
}

MemoryState engine_state_of(int64_t dim, int64_t last_step, const I64Array& offsets, const F64Array& points,
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
    return s;
}

/// The engine fields of a state dict (as engine_state_dict writes them).
MemoryState engine_state_of(const py::dict& d) {
    return engine_state_of(d["dim"].cast<int64_t>(), d["last_step"].cast<int64_t>(), d["offsets"].cast<I64Array>(),
                           d["points"].cast<F64Array>(), d["steps"].cast<I64Array>(), d["labels"].cast<I64Array>(),
                           d["mst_u"].cast<I64Array>(), d["mst_v"].cast<I64Array>(), d["mst_weight"].cast<F64Array>());
}

void load_state(KeyedMemory& memory, int64_t dim, int64_t last_step, const I64Array& offsets, const F64Array& points,
                const I64Array& steps, const I64Array& labels, const I64Array& mst_u, const I64Array& mst_v,
                const F64Array& mst_weight) {
    const MemoryState s = engine_state_of(dim, last_step, offsets, points, steps, labels, mst_u, mst_v, mst_weight);
    py::gil_scoped_release release;
    memory.load_state(s);
}

using Flags = py::array_t<bool, py::array::c_style | py::array::forcecast>;

/// A user's penalty callable as the core's PenaltyFunction: sizes go in as int64 [M], the
/// answer comes back as float64 [M] (the core checks its length and values).
medscore::PenaltyFunction penalty_function(const py::object& penalty) {
    if (penalty.is_none()) return nullptr;
    return [penalty](const std::vector<int64_t>& sizes) {
        py::gil_scoped_acquire acquire;
        const py::object values = penalty(copy_of(sizes));
        const auto array = Doubles::ensure(values);
        if (!array) throw py::error_already_set();
        return std::vector<double>(array.data(), array.data() + array.size());
    };
}

py::tuple penalize(medscore::Memory& memory, const F64Array& points, const I64Array& keys, const Flags& correct,
                   const std::optional<Flags>& valid, int64_t step) {
    if (points.ndim() != 2) throw std::invalid_argument("penalize: points must be [N, D]");
    const py::ssize_t n = points.shape(0);
    if (keys.ndim() != 1 || keys.shape(0) != n || correct.ndim() != 1 || correct.shape(0) != n ||
        (valid && (valid->ndim() != 1 || valid->shape(0) != n))) {
        throw std::invalid_argument("penalize: keys, correct and valid must be [N] with N = " + std::to_string(n));
    }
    const medscore::PointsView view{points.data(), n, points.shape(1)};
    // numpy bools are one byte holding 0 or 1, the core's flags.
    const auto* correct_flags = reinterpret_cast<const uint8_t*>(correct.data());
    const auto* valid_flags = valid ? reinterpret_cast<const uint8_t*>(valid->data()) : nullptr;
    medscore::Penalties out;
    {
        py::gil_scoped_release release;
        out = memory.penalize(view, keys.data(), correct_flags, valid_flags, step);
    }
    return py::make_tuple(to_numpy(std::move(out.penalties)), to_numpy(std::move(out.labels)),
                          to_numpy(std::move(out.sizes)));
}

py::dict memory_state(const medscore::Memory& memory) {
    medscore::MemorySnapshot s;
    {
        py::gil_scoped_release release;
        s = memory.snapshot();
    }
    py::dict d;
    d["keys"] = copy_of(s.keys);
    d["last_step"] = s.last_step;
    d["dim"] = s.dim;
    d["last_penalties"] = copy_of(s.last_penalties);
    d["engine"] = s.has_engine ? py::object(engine_state_dict(s.engine)) : py::object(py::none());
    return d;
}

medscore::Memory memory_from_state(const medscore::MemoryOptions& options, const py::dict& state,
                                   const py::object& penalty) {
    medscore::MemorySnapshot s;
    s.options = options;
    s.keys = to_vector<int64_t>(state["keys"].cast<I64Array>());
    s.last_step = state["last_step"].cast<int64_t>();
    s.dim = state["dim"].cast<int64_t>();
    s.last_penalties = to_vector<double>(state["last_penalties"].cast<F64Array>());
    s.has_engine = !state["engine"].is_none();
    if (s.has_engine) s.engine = engine_state_of(state["engine"].cast<py::dict>());
    // The GIL stays held: a refused state destroys the callable's Python reference.
    return medscore::Memory::from_snapshot(s, penalty_function(penalty));
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
    py::class_<medscore::MemoryOptions>(m, "MemoryOptions",
                                        "Options of a Memory (error_memory.hpp); defaults are medscore.Memory's.")
        .def(py::init<>())
        .def_static("preset", &medscore::MemoryOptions::preset, py::arg("name"))
        .def_readwrite("keyed", &medscore::MemoryOptions::keyed)
        .def_readwrite("store", &medscore::MemoryOptions::store)
        .def_readwrite("normalize", &medscore::MemoryOptions::normalize)
        .def_readwrite("min_cluster_size", &medscore::MemoryOptions::min_cluster_size)
        .def_readwrite("min_samples", &medscore::MemoryOptions::min_samples)
        .def_readwrite("method", &medscore::MemoryOptions::method)
        .def_readwrite("assign", &medscore::MemoryOptions::assign)
        .def_readwrite("penalize_noise", &medscore::MemoryOptions::penalize_noise)
        .def_readwrite("alpha", &medscore::MemoryOptions::alpha)
        .def_readwrite("beta", &medscore::MemoryOptions::beta)
        .def_readwrite("target", &medscore::MemoryOptions::target)
        .def_readwrite("max_age", &medscore::MemoryOptions::max_age)
        .def_readwrite("capacity", &medscore::MemoryOptions::capacity)
        .def_readwrite("nan_rows", &medscore::MemoryOptions::nan_rows)
        .def_readwrite("n_threads", &medscore::MemoryOptions::n_threads)
        .def("check", [](const medscore::MemoryOptions& o) { medscore::check_options(o); },
             "Raises ValueError naming the first bad option.");
    m.attr("DEAD_KEYS_KEPT") = medscore::kDeadKeysKept;
    py::class_<medscore::Memory>(m, "Memory", "The error memory's rules and state (error_memory.hpp).")
        .def(py::init([](const medscore::MemoryOptions& options, const py::object& penalty) {
                 return medscore::Memory(options, penalty_function(penalty));
             }),
             py::arg("options"), py::arg("penalty") = py::none())
        .def_static("from_state", &memory_from_state, py::arg("options"), py::arg("state"),
                    py::arg("penalty") = py::none(), "A Memory holding state() of another (checked; ValueError).")
        .def("penalize", &penalize, py::arg("points"), py::arg("keys"), py::arg("correct"), py::arg("valid"),
             py::arg("step"),
             "points f64 [N, D], keys int64 [N], correct bool [N], valid bool [N] or None, step (-1: last + 1) -> "
             "(penalties f64 [N], labels int64 [N], sizes int64 [N]); GIL released but for the penalty callable.")
        .def("state", &memory_state,
             "dict: keys int64 [K] by id, last_step, dim (0: nothing stored), last_penalties f64, engine (dict or None).")
        .def_property_readonly("dim", &medscore::Memory::dim)
        .def_property_readonly("last_step", &medscore::Memory::last_step)
        .def_property_readonly("n_keys", [](const medscore::Memory& mem) { return mem.keys().size(); })
        .def_property_readonly("keys", [](const medscore::Memory& mem) { return copy_of(mem.keys()); })
        .def_property_readonly("last_penalties", [](const medscore::Memory& mem) { return copy_of(mem.last_penalties()); })
        .def_property_readonly("engine", [](const medscore::Memory& mem) { return mem.engine(); },
                               py::return_value_policy::reference_internal, "The KeyedMemory, or None before a point is stored.");
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
