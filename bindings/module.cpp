// The extension module medscore._core: each area registers its own functions.
#include <pybind11/pybind11.h>

#include "registrations.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "medscore's C++ core (exact HDBSCAN stages, error memory); see docs/SPEC.md";
    register_enums(m);
    register_hdbscan(m);
    register_memory(m);
    register_incremental(m);
    register_checkpoint(m);
}
