// One registration function per binding area (bindings/<area>.cpp); module.cpp calls each once.
#pragma once
#include <pybind11/pybind11.h>

/// The batch HDBSCAN stages of docs/SPEC.md ("Backend interface"): bindings/hdbscan.cpp.
void register_hdbscan(pybind11::module_& m);

/// medscore::KeyedMemory: bindings/memory.cpp.
void register_memory(pybind11::module_& m);

/// Kernels of medscore.IncrementalHDBSCAN: bindings/incremental.cpp.
void register_incremental(pybind11::module_& m);
