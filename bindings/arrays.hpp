// numpy <-> std::vector conversions shared by the binding files (glue only, no algorithm).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medscore/matrix.hpp"
#include "medscore/select.hpp"

namespace medscore_bindings {

namespace py = pybind11;

/// Arrays are forced to C order and the stated dtype, so the core always reads by value.
using Points = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Int64s = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

inline medscore::PointsView points_view(const Points& x) {
    if (x.ndim() != 2) {
        throw std::invalid_argument("X must be 2-dimensional [N, D], got ndim " + std::to_string(x.ndim()));
    }
    return medscore::PointsView{x.data(), x.shape(0), x.shape(1)};
}

/// Moves a vector into a numpy array of the given shape without copying.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
    auto* owned = new std::vector<T>(std::move(values));
    py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, owned->data(), free_when_done);
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values) {
    const auto n = static_cast<py::ssize_t>(values.size());
    return to_numpy(std::move(values), {n});
}

/// A copy of a vector as a numpy array of the given shape (for state the core keeps).
template <class T>
py::array_t<T> copy_of(const std::vector<T>& values, std::vector<py::ssize_t> shape) {
    return py::array_t<T>(shape, values.data());
}

template <class T>
py::array_t<T> copy_of(const std::vector<T>& values) {
    return copy_of(values, {static_cast<py::ssize_t>(values.size())});
}

template <class T, class Array>
std::vector<T> to_vector(const Array& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

/// Copies a 1-d structured numpy array of exactly dtype T into a vector.
template <class T>
std::vector<T> from_numpy(const py::array& array, const char* name) {
    if (!array.dtype().equal(py::dtype::of<T>())) {
        throw std::invalid_argument(std::string(name) + " must have dtype " +
                                    py::str(py::dtype::of<T>()).cast<std::string>() + ", got " +
                                    py::str(array.dtype()).cast<std::string>());
    }
    if (array.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be 1-dimensional");
    const auto contiguous = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(array);
    return to_vector<T>(contiguous);
}

}  // namespace medscore_bindings
