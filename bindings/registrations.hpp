// One registration function per binding area (bindings/<area>.cpp); module.cpp calls each once.
#pragma once
#include <pybind11/pybind11.h>

/// The core's enums (SelectionMethod, AssignRule, StoreRule, NanRows, PenaltyTarget):
/// bindings/enums.cpp. Registered first: the other areas' signatures name them.
void register_enums(pybind11::module_& m);

/// The batch HDBSCAN stages of docs/SPEC.md ("Backend interface"): bindings/hdbscan.cpp.
void register_hdbscan(pybind11::module_& m);

/// medscore::KeyedMemory, medscore::MemoryOptions and medscore::Memory: bindings/memory.cpp.
void register_memory(pybind11::module_& m);

/// Kernels of medscore.IncrementalHDBSCAN: bindings/incremental.cpp.
void register_incremental(pybind11::module_& m);

/// Checkpoint files of medscore.Memory (medscore/checkpoint.hpp): bindings/checkpoint.cpp.
void register_checkpoint(pybind11::module_& m);
