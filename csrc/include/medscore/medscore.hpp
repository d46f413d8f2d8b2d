// The C++ API of medscore in one include: batch HDBSCAN (hdbscan.hpp), the exact incremental
// engine IncrementalHDBSCAN (incremental_hdbscan.hpp), the per-key clustering engine
// KeyedMemory (memory.hpp), the error memory with its penalties medscore::Memory
// (error_memory.hpp) and its checkpoint files (checkpoint.hpp). Link medscore::core. The
// headers installed beside it are the public API; csrc/private/ holds the internals.
//
//     medscore::Memory memory(medscore::MemoryOptions::preset("paper"));
//     medscore::Penalties p = memory.penalize({fingerprints, n, dim}, keys, correct, nullptr, step);
//     medscore::save_memory(memory, "memory.ckpt");   // readable by medscore.Memory.load in Python
//
// Bad input throws std::invalid_argument; a memory is unchanged by a call that throws.
// The C API is medscore/medscore.h.
#pragma once

#include "medscore/checkpoint.hpp"
#include "medscore/error_memory.hpp"
#include "medscore/hdbscan.hpp"
#include "medscore/incremental_hdbscan.hpp"
#include "medscore/memory.hpp"

namespace medscore {

/// The library version, "MAJOR.MINOR.PATCH".
inline constexpr const char* version = "0.1.0";

}  // namespace medscore
