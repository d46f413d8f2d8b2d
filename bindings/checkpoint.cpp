// pybind11 glue for checkpoint files (csrc/include/medscore/checkpoint.hpp): converts a Memory
// state between Python objects and medscore::CheckpointState, releases the GIL, calls the core.
// medscore/_checkpoint.py turns these into the state dicts of medscore.Memory.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "medscore/checkpoint.hpp"
#include "arrays.hpp"
#include "registrations.hpp"

namespace py = pybind11;
using medscore::CheckpointKey;
using medscore::CheckpointState;
using medscore::CheckpointValue;

namespace {

using medscore_bindings::Doubles;
using medscore_bindings::Int64s;
using medscore_bindings::to_numpy;
using medscore_bindings::to_vector;

CheckpointValue value_of(const std::string& name, const py::handle& v) {
    if (v.is_none()) return CheckpointValue::of_null();
    if (py::isinstance<py::bool_>(v)) return CheckpointValue::of_bool(v.cast<bool>());
    if (py::isinstance<py::int_>(v)) return CheckpointValue::of_int(v.cast<int64_t>());
    if (py::isinstance<py::float_>(v)) return CheckpointValue::of_real(v.cast<double>());
    if (py::isinstance<py::str>(v)) return CheckpointValue::of_text(v.cast<std::string>());
    throw py::type_error("option " + name + " must be None, bool, int, float or str to be saved, got " +
                         py::str(py::type::of(v)).cast<std::string>());
}

py::object python_of(const CheckpointValue& v) {
    switch (v.type) {
        case CheckpointValue::Type::boolean: return py::bool_(v.boolean);
        case CheckpointValue::Type::integer: return py::int_(v.integer);
        case CheckpointValue::Type::real: return py::float_(v.real);
        case CheckpointValue::Type::text: return py::str(v.text);
        default: return py::none();
    }
}

medscore::MemoryState engine_of(const py::dict& e) {
    medscore::MemoryState s;
    s.dim = e["dim"].cast<int64_t>();
    s.last_step = e["last_step"].cast<int64_t>();
    const auto points = e["points"].cast<Doubles>();
    if (points.ndim() != 2) throw std::invalid_argument("engine points must be [P, dim]");
    s.points = to_vector<double>(points);
    s.offsets = to_vector<int64_t>(e["offsets"].cast<Int64s>());
    s.steps = to_vector<int64_t>(e["steps"].cast<Int64s>());
    s.labels = to_vector<int64_t>(e["labels"].cast<Int64s>());
    const auto u = e["mst_u"].cast<Int64s>(), v = e["mst_v"].cast<Int64s>();
    const auto w = e["mst_weight"].cast<Doubles>();
    if (u.size() != v.size() || u.size() != w.size()) throw std::invalid_argument("engine mst_u, mst_v and mst_weight differ in length");
    for (py::ssize_t i = 0; i < u.size(); ++i) s.mst.push_back({u.data()[i], v.data()[i], w.data()[i]});
    return s;
}

py::dict python_of_engine(medscore::MemoryState&& s) {
    const auto n_points = static_cast<py::ssize_t>(s.steps.size()), n_edges = static_cast<py::ssize_t>(s.mst.size());
    std::vector<int64_t> u(s.mst.size()), v(s.mst.size());
    std::vector<double> w(s.mst.size());
    for (size_t i = 0; i < s.mst.size(); ++i) {
        u[i] = s.mst[i].u;
        v[i] = s.mst[i].v;
        w[i] = s.mst[i].weight;
    }
    py::dict e;
    e["dim"] = s.dim;
    e["last_step"] = s.last_step;
    e["offsets"] = to_numpy(std::move(s.offsets));
    e["points"] = to_numpy(std::move(s.points), {n_points, static_cast<py::ssize_t>(s.dim)});
    e["steps"] = to_numpy(std::move(s.steps));
    e["labels"] = to_numpy(std::move(s.labels));
    e["mst_u"] = to_numpy(std::move(u), {n_edges});
    e["mst_v"] = to_numpy(std::move(v), {n_edges});
    e["mst_weight"] = to_numpy(std::move(w), {n_edges});
    return e;
}

void write_state(const py::bytes& path, int64_t state_version, const py::dict& options,
           const std::vector<std::pair<std::string, py::bytes>>& keys, int64_t last_step, int64_t dim,
           const Doubles& last_penalties, const py::object& engine) {
    CheckpointState s;
    s.state_version = state_version;
    for (const auto& [name, value] : options) {
        const auto n = name.cast<std::string>();
        s.options.push_back({n, value_of(n, value)});
    }
    for (const auto& [tag, bytes] : keys) {
        if (tag.size() != 1) throw std::invalid_argument("a key tag is one character, got '" + tag + "'");
        s.keys.push_back({static_cast<CheckpointKey::Tag>(tag[0]), std::string(bytes)});
    }
    s.last_step = last_step;
    s.dim = dim;
    s.last_penalties = to_vector<double>(last_penalties);
    s.has_engine = !engine.is_none();
    if (s.has_engine) s.engine = engine_of(engine.cast<py::dict>());
    const std::string file = path;  // os.fsencode(path): any name the file system allows
    py::gil_scoped_release release;
    medscore::write_checkpoint(file, s);
}

py::array_t<uint8_t> read_file_bytes(const py::bytes& path) {
    const std::string file = path;
    std::vector<uint8_t> bytes;
    {
        py::gil_scoped_release release;
        bytes = medscore::read_checkpoint_bytes(file);
    }
    return to_numpy(std::move(bytes));
}

py::dict deserialize_state(const py::array_t<uint8_t, py::array::c_style>& bytes, const std::string& where) {
    CheckpointState s;
    {
        py::gil_scoped_release release;
        s = medscore::deserialize_checkpoint(bytes.data(), static_cast<size_t>(bytes.size()), where);
    }
    py::dict options;
    for (const auto& o : s.options) options[py::str(o.name)] = python_of(o.value);
    py::list keys;
    for (const auto& k : s.keys) keys.append(py::make_tuple(py::str(std::string(1, static_cast<char>(k.tag))), py::bytes(k.bytes)));
    py::dict out;
    out["state_version"] = s.state_version;
    out["options"] = options;
    out["keys"] = keys;
    out["last_step"] = s.last_step;
    out["dim"] = s.dim > 0 ? py::object(py::int_(s.dim)) : py::object(py::none());
    out["last_penalties"] = to_numpy(std::move(s.last_penalties));
    out["engine"] = s.has_engine ? py::object(python_of_engine(std::move(s.engine))) : py::object(py::none());
    return out;
}

py::str message_of(const std::exception& e) {
    const std::string what = e.what();
    return py::reinterpret_steal<py::str>(
        PyUnicode_DecodeUTF8(what.data(), static_cast<py::ssize_t>(what.size()), "backslashreplace"));
}

}  // namespace

void register_checkpoint(py::module_& m) {
    auto error = py::register_local_exception<medscore::CheckpointError>(m, "CheckpointError", PyExc_ValueError);
    error.attr("__doc__") = "A checkpoint file that cannot be read back exactly (corrupted, truncated, foreign).";
    // Registered after register_local_exception, so tried before it. Messages name the file as
    // the bytes of os.fsencode(path), which need not be UTF-8: shown with backslash escapes.
    // FileError carries errno: OSError(errno, message) becomes FileNotFoundError and the like.
    py::register_local_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const medscore::CheckpointError& e) {
            const py::object type = py::module_::import("medscore._core").attr("CheckpointError");
            PyErr_SetObject(type.ptr(), message_of(e).ptr());
        } catch (const medscore::FileError& e) {
            const py::object error = py::reinterpret_borrow<py::object>(PyExc_OSError)(e.error_number(), message_of(e));
            PyErr_SetObject(PyExc_OSError, error.ptr());
        }
    });
    m.def("checkpoint_write", &write_state, py::arg("path"), py::arg("state_version"), py::arg("options"), py::arg("keys"),
          py::arg("last_step"), py::arg("dim"), py::arg("last_penalties"), py::arg("engine"),
          "Writes a Memory state atomically (format version 2). keys: [(tag 'i' | 's' | 'b', bytes)]; "
          "dim: 0 for none; engine: None or the dict of KeyedMemory.state().");
    m.def("checkpoint_read_bytes", &read_file_bytes, py::arg("path"),
          "The bytes (uint8 [size]) of a regular file, read without blocking; CheckpointError otherwise.");
    m.def("checkpoint_deserialize", &deserialize_state, py::arg("data"), py::arg("where"),
          "The state in version-2 file bytes as a dict (state_version, options, keys, last_step, dim, "
          "last_penalties, engine); CheckpointError for a damaged or foreign file.");
}
